"""The smtpd_milter_maps socketmap (`extrusion.milter.attach`) on a real engine.

The wire protocol (netstrings, garbage, oversize, an unknown map name, many
requests in one read or one request over many) through Twisted's string
transport, and the answers: NOTFOUND (Postfix attaches smtpd_milters) for a
client under attention or one the engine cannot judge yet, DISABLE (or the
admin's other milters) for the rest. Postfix itself is in
tests/test_milter_attach_postfix.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.testing import StringTransport

from extrusion.milter.attach import (
    MAX_REQUEST,
    Attendance,
    MilterMapFactory,
    RequestError,
    netstring,
    take_requests,
)
from extrusion.scoring import admin
from extrusion.scoring.attention import attention_of
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import OperatorAction, OperatorVerb, Stage
from extrusion.scoring.memory import SenderMemory
from tests.helpers import Clock, config

WATCHED_IP = "192.0.2.7"
SASL_HOME = "198.51.100.9"  # where the held SASL user last connected from
CUSTOMER_IP = "203.0.113.10"  # inside the held customer's range, never seen itself
NEWCOMER = "192.0.2.200"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    clock = Clock()
    cfg = config(tmp_path, customers=[{"name": "acme", "networks": ["203.0.113.0/28"]}])
    eng = open_engine(cfg, clock)
    # A SASL user's memory knows the address it came from (the policy request's).
    eng.decide("sasl:bob@example.net", Stage.RCPT, 1, clock.t, client_addr=SASL_HOME,
               recipient="x@remote.example")
    eng.decide("ip:192.0.2.8", Stage.RCPT, 1, clock.t, client_addr="192.0.2.8",
               recipient="x@remote.example")  # seen, in good standing
    for key in (f"ip:{WATCHED_IP}", "sasl:bob@example.net", "customer:acme"):
        eng.operator(OperatorAction(clock.t, key, OperatorVerb.HOLD, "kim", "test"))
    return eng


def answer(att: Attendance, request: str) -> str:
    return att.answer(request.encode()).decode()


def attendance(engine: Engine | None, others: str = "") -> Attendance:
    return Attendance(lambda: engine, others=others, refresh_seconds=1.0, clock=Clock())


# --- the answers ---------------------------------------------------------------------------


def test_clients_under_attention_get_smtpd_milters_and_the_rest_none(engine: Engine) -> None:
    att = attendance(engine)
    assert answer(att, f"milters {WATCHED_IP}") == "NOTFOUND "
    assert answer(att, f"milters {SASL_HOME}") == "NOTFOUND "  # the held SASL user's address
    assert answer(att, f"milters {CUSTOMER_IP}") == "NOTFOUND "  # its key is customer:acme
    assert answer(att, "milters 192.0.2.8") == "OK DISABLE"
    assert answer(att, f"milters {NEWCOMER}") == "OK DISABLE"
    assert (att.attached, att.detached) == (3, 2)
    engine.close()


def test_the_other_milters_stay_for_clients_in_good_standing(engine: Engine) -> None:
    att = attendance(engine, others="inet:127.0.0.1:8891")
    assert answer(att, f"milters {NEWCOMER}") == "OK inet:127.0.0.1:8891"
    assert answer(att, f"milters {WATCHED_IP}") == "NOTFOUND "
    engine.close()


def test_an_engine_that_cannot_judge_yet_or_a_key_that_is_no_address_attaches() -> None:
    assert answer(attendance(None), f"milters {NEWCOMER}") == "NOTFOUND "
    assert answer(attendance(None), "milters unknown") == "NOTFOUND "


def test_ipv6_and_mapped_addresses_are_read_as_the_engine_keys_them(engine: Engine) -> None:
    att = attendance(engine)
    assert answer(att, f"milters ::ffff:{WATCHED_IP}") == "NOTFOUND "
    assert answer(att, "milters 2001:DB8::1") == "OK DISABLE"
    engine.close()


def test_the_list_is_taken_again_only_after_the_refresh_interval(engine: Engine) -> None:
    clock = Clock()
    att = Attendance(lambda: engine, refresh_seconds=5.0, clock=clock)
    assert answer(att, f"milters {NEWCOMER}") == "OK DISABLE"
    engine.operator(OperatorAction(clock.t, f"ip:{NEWCOMER}", OperatorVerb.BLOCK, "kim", "x"))
    assert answer(att, f"milters {NEWCOMER}") == "OK DISABLE"  # the list of a moment ago
    clock.advance(5.0)
    assert answer(att, f"milters {NEWCOMER}") == "NOTFOUND "
    engine.close()


def test_the_answer_follows_a_release_here_and_a_block_from_the_cli(engine: Engine,
                                                                   tmp_path: Path) -> None:
    """What the CLI wrote to the store reaches the answer at the engine's refresh, and an
    operator's release here takes the client out of attention at the next look."""
    clock = Clock()
    att = Attendance(lambda: engine, refresh_seconds=1.0, clock=clock)
    assert answer(att, f"milters {NEWCOMER}") == "OK DISABLE"
    cfg = config(tmp_path, customers=[{"name": "acme", "networks": ["203.0.113.0/28"]}])
    admin.operator_action(cfg, "block", f"ip:{NEWCOMER}", "stolen", "kim", clock.t)
    engine.refresh(clock.t)
    engine.operator(OperatorAction(clock.t, f"ip:{WATCHED_IP}", OperatorVerb.RELEASE, "kim",
                                   "cleaned"))
    clock.advance(1.0)
    assert answer(att, f"milters {NEWCOMER}") == "NOTFOUND "
    assert answer(att, f"milters {WATCHED_IP}") == "OK DISABLE"
    assert answer(att, f"milters {SASL_HOME}") == "NOTFOUND "  # still held
    engine.close()


def test_probation_and_watch_are_attention_and_plain_ok_is_not() -> None:
    ok, watched, probation = (SenderMemory(k, 0.0, 3600.0) for k in ("ip:a", "ip:b", "ip:c"))
    from extrusion.scoring.events import State

    watched.state = State.WATCH
    watched.client_addr = "192.0.2.1"
    probation.probation = object()
    got = attention_of([ok, watched, probation])
    assert got.keys == {"ip:b", "ip:c"}
    assert got.addresses == {"192.0.2.1"}


def test_an_engine_failure_is_a_temporary_error_so_postfix_attaches(engine: Engine) -> None:
    engine.close()

    def broken() -> Engine:
        raise RuntimeError("store gone")

    att = Attendance(broken, clock=Clock())
    assert answer(att, f"milters {NEWCOMER}") == "TEMP engine failure"


# --- the wire -------------------------------------------------------------------------------


def connect(engine: Engine | None, **kwargs: object) -> tuple[MilterMapFactory, StringTransport,
                                                               object]:
    factory = MilterMapFactory(attendance(engine), **kwargs)  # type: ignore[arg-type]
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    proto = factory.buildProtocol(peer)
    assert proto is not None
    # Its idle timeout on a clock of its own: on the global reactor it would outlive the
    # test and fail the next Twisted trial case's clean-reactor check.
    proto.callLater = task.Clock().callLater  # type: ignore[attr-defined]
    transport = StringTransport(peerAddress=peer)
    proto.makeConnection(transport)
    return factory, transport, proto


def test_requests_in_one_read_and_one_request_over_many(engine: Engine) -> None:
    _, transport, proto = connect(engine)
    both = netstring(f"milters {WATCHED_IP}".encode()) + netstring(b"milters 192.0.2.8")
    proto.dataReceived(both[:5])  # type: ignore[attr-defined]
    assert transport.value() == b""
    proto.dataReceived(both[5:])  # type: ignore[attr-defined]
    assert transport.value() == b"9:NOTFOUND ,10:OK DISABLE,"
    assert not transport.disconnecting
    engine.close()


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.0\r\n\r\n", b"12345:", b"7:milters;",
                                     b"-1:x,", b"\x00\xff"])
def test_garbage_is_answered_perm_and_the_connection_closed(garbage: bytes) -> None:
    factory, transport, proto = connect(None)
    proto.dataReceived(garbage)  # type: ignore[attr-defined]
    assert transport.value().split(b":", 1)[1].startswith(b"PERM ")
    assert transport.disconnecting
    assert factory.refusals == 1


def test_an_oversize_request_is_refused_before_it_is_read() -> None:
    _, transport, proto = connect(None)
    proto.dataReceived(b"%d:milters " % (MAX_REQUEST + 1))  # type: ignore[attr-defined]
    assert b"PERM request of %d bytes" % (MAX_REQUEST + 1) in transport.value()
    assert transport.disconnecting
    with pytest.raises(RequestError):
        take_requests(bytearray(b"99999"))  # a length no request of ours has


def test_an_unknown_map_name_is_a_permanent_error_and_the_connection_stays(
        engine: Engine) -> None:
    _, transport, proto = connect(engine)
    proto.dataReceived(netstring(b"virtual 192.0.2.7"))  # type: ignore[attr-defined]
    assert transport.value().split(b":", 1)[1].startswith(b"PERM unknown map name")
    assert not transport.disconnecting
    engine.close()


def test_connections_are_counted_and_capped_and_strangers_refused() -> None:
    factory, _, proto = connect(None, max_connections=1,
                                allowed_clients=("127.0.0.0/8",))
    assert factory.connections == 1
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001)) is None
    proto.connectionLost(None)  # type: ignore[attr-defined]
    assert factory.connections == 0
    assert factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40002)) is None
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 40003)) is not None
    assert factory.buildProtocol(UNIXAddress(b"/run/x.sock")) is not None
    assert factory.refusals == 2
