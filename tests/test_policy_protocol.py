"""The policy protocol over StringTransport: bytes in, bytes out, with the real engine.

The first of three depths (then a listening server, then the installed
command). Time is a `task.Clock`, so idle timeouts are tested without waiting.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task, tcp
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransport

from extrusion.policyd.metrics import Metrics
from extrusion.policyd.protocol import PolicyFactory, PolicyProtocol
from extrusion.policyd.replysend import direct_socket
from extrusion.policyd.responder import Responder, action_for
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import (
    Action,
    Decision,
    OperatorAction,
    OperatorVerb,
    Stage,
    State,
)

from .test_policyd_support import ALICE, make_config, reply, request

IDLE = 30.0
LIMITS = {"default": {"messages_per_hour": 3, "recipients_per_hour": 5}}


class Holder:
    """What the service's EngineService is to the responder: something with `.engine`."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = open_engine(make_config(tmp_path, limits=LIMITS))
    yield e
    e.close()


@pytest.fixture
def clock() -> task.Clock:
    c = task.Clock()
    c.advance(time.time())  # the engine's windows want plausible times
    return c


def build(source: Any, clock: task.Clock, default: str = "DUNNO") -> PolicyFactory:
    metrics = Metrics()
    responder = Responder(source, default, metrics, clock.seconds)
    return PolicyFactory(
        responder, metrics, clock, allowed_clients=("127.0.0.0/8", "::1/128"),
        max_line=512, max_attributes=40, idle_timeout=IDLE,
    )


@pytest.fixture
def factory(engine: Engine, clock: task.Clock) -> PolicyFactory:
    return build(Holder(engine), clock)


def connect(
    factory: PolicyFactory, host: str = "127.0.0.1"
) -> tuple[PolicyProtocol, StringTransport]:
    addr = IPv4Address("TCP", host, 40000)
    proto = factory.buildProtocol(addr)
    assert proto is not None
    transport = StringTransport(peerAddress=addr)
    proto.makeConnection(transport)
    return proto, transport


def metric(factory: PolicyFactory, name: str, **labels: str) -> float:
    value = factory.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def act(engine: Engine, verb: OperatorVerb, sender: str = f"sasl:{ALICE}") -> None:
    engine.operator(OperatorAction(time.time(), sender, verb, "noc", "test"))


# --- the happy path ------------------------------------------------------------------------


def test_one_request_one_reply_connection_stays_open(factory: PolicyFactory) -> None:
    proto, tr = connect(factory)
    proto.dataReceived(request())
    assert tr.value() == reply("DUNNO")
    assert not tr.disconnecting
    tr.clear()
    proto.dataReceived(request())  # the same connection serves the next request
    assert tr.value() == reply("DUNNO")


def test_pipelined_requests_are_answered_in_order(factory: PolicyFactory, engine: Engine) -> None:
    act(engine, OperatorVerb.BLOCK, "ip:192.0.2.99")
    proto, tr = connect(factory)
    blocked = request(sasl_username="", client_address="192.0.2.99")
    proto.dataReceived(request() + blocked + request("END-OF-MESSAGE", recipient_count=1))
    replies = tr.value().split(b"\n\n")[:-1]
    assert replies[0] == b"action=DUNNO"
    assert replies[1].startswith(b"action=REJECT 5.7.1 ")
    assert replies[2] == b"action=DUNNO"


class WriterLog:
    """The reactor a real transport registers with when it must wait to write."""

    def __init__(self) -> None:
        self.writers: list[object] = []

    def addWriter(self, writer: object) -> None:
        self.writers.append(writer)

    def removeWriter(self, writer: object) -> None:
        pass

    def addReader(self, reader: object) -> None:
        pass

    def removeReader(self, reader: object) -> None:
        pass


class ShortSocket:
    """A socket that takes only `room` bytes, or none (EAGAIN) when room is None."""

    def __init__(self, room: int | None) -> None:
        self.room = room
        self.sent = b""

    def send(self, data: bytes) -> int:
        if self.room is None:
            raise BlockingIOError
        self.sent += data[: self.room]
        return min(self.room, len(data))


PlainTCP = tuple[PolicyProtocol, Any, socket.socket, WriterLog]


@pytest.fixture
def plain_tcp(factory: PolicyFactory) -> Iterator[PlainTCP]:
    """A protocol on Twisted's own TCP transport over a socket pair: (protocol, transport,
    the client's end, the reactor it would register with to write later)."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)
    reactor = WriterLog()
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    assert proto is not None
    transport = tcp.Server(ours, proto, ("127.0.0.1", 40000), None, 1, reactor)  # type: ignore[arg-type]
    proto.makeConnection(transport)
    with ours, theirs:
        yield proto, transport, theirs, reactor


def test_replies_leave_at_the_end_of_the_reactor_turn_without_waiting_to_write(
    plain_tcp: PlainTCP, clock: task.Clock
) -> None:
    proto, _, theirs, reactor = plain_tcp
    proto.dataReceived(request())
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):  # not before this turn's other replies
        theirs.recv(4096)
    clock.advance(0)
    theirs.settimeout(5)
    assert theirs.recv(4096) == reply("DUNNO")
    proto.dataReceived(request())
    proto.dataReceived(request("END-OF-MESSAGE", recipient_count=1))
    clock.advance(0)
    assert read_all(theirs, 2) == reply("DUNNO") * 2
    assert reactor.writers == []  # never queued: no registration for writability


def test_the_answer_goes_out_before_the_hang_up(
    plain_tcp: PlainTCP, factory: PolicyFactory
) -> None:
    proto, _, theirs, _ = plain_tcp
    factory.draining = True
    proto.dataReceived(request())  # answered, then closed (draining), in the same turn
    assert proto.closing
    assert read_all(theirs, 1) == reply("DUNNO")


def test_a_reply_after_queued_bytes_waits_behind_them(
    plain_tcp: PlainTCP, clock: task.Clock
) -> None:
    proto, transport, theirs, reactor = plain_tcp
    transport.write(b"queued\n")  # what Twisted still holds goes out first
    proto.dataReceived(request())
    clock.advance(0)
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(4096)
    transport.doWrite()
    theirs.settimeout(5)
    assert read_all(theirs, 1) == b"queued\n" + reply("DUNNO")
    assert set(reactor.writers) == {transport}  # Twisted wrote it


@pytest.mark.parametrize("room", [None, 0, 5])
def test_what_the_socket_does_not_take_is_queued_in_order(
    plain_tcp: PlainTCP, clock: task.Clock, room: int | None
) -> None:
    proto, transport, theirs, reactor = plain_tcp
    short = proto._sock = ShortSocket(room)
    proto.dataReceived(request())
    clock.advance(0)
    transport.doWrite()  # the rest, through Twisted's own write
    assert short.sent + read_all(theirs, 1 if room is None or room < 6 else 0) == reply("DUNNO")
    assert set(reactor.writers) == {transport}  # Twisted wrote it


def test_a_twisted_without_the_buffer_we_read_gets_its_own_write(plain_tcp: PlainTCP) -> None:
    _, transport, _, _ = plain_tcp
    assert direct_socket(transport) is transport.socket
    del transport._tempDataLen  # as if a Twisted release renamed it
    assert direct_socket(transport) is None


def test_no_direct_write_on_other_transports(factory: PolicyFactory) -> None:
    proto, tr = connect(factory)  # StringTransport: the reply goes through its write()
    assert proto._sock is None
    proto.dataReceived(request())
    assert tr.value() == reply("DUNNO")


def read_all(sock: socket.socket, replies: int) -> bytes:
    buf = b""
    while buf.count(b"\n\n") < replies:
        buf += sock.recv(4096)
    return buf


def test_one_byte_at_a_time(factory: PolicyFactory) -> None:
    proto, tr = connect(factory)
    data = request() + request("END-OF-MESSAGE", recipient_count=1)
    for i in range(len(data)):
        proto.dataReceived(data[i : i + 1])
        if i < len(request()) - 1:
            assert tr.value() == b""  # nothing before the empty line
    assert tr.value() == reply("DUNNO") * 2


def test_recipients_are_counted_at_rcpt(factory: PolicyFactory) -> None:
    proto, tr = connect(factory)
    for _ in range(5):  # recipients_per_hour = 5
        proto.dataReceived(request("RCPT"))
    assert tr.value() == reply("DUNNO") * 5
    tr.clear()
    proto.dataReceived(request("RCPT"))
    assert tr.value().startswith(b"action=DEFER_IF_PERMIT 4.7.1 extrusion: rate limited")
    assert tr.value().endswith(b"\n\n") and tr.value().count(b"\n") == 2
    assert metric(factory, "extrusion_policy_decisions_total", action="DEFER_IF_PERMIT") == 1


def test_messages_are_counted_at_end_of_message_only(factory: PolicyFactory) -> None:
    proto, tr = connect(factory)
    # DATA is asked but not counted: three messages pass DATA and END-OF-MESSAGE.
    for _ in range(3):  # messages_per_hour = 3
        proto.dataReceived(request("DATA", recipient_count=1))
        proto.dataReceived(request("END-OF-MESSAGE", recipient_count=1, queue_id="4XyZ1"))
    assert tr.value() == reply("DUNNO") * 6
    tr.clear()
    proto.dataReceived(request("END-OF-MESSAGE", recipient_count=1))
    assert tr.value().startswith(b"action=DEFER_IF_PERMIT 4.7.1 ")


def test_held_sender_gets_hold_blocked_gets_reject_released_gets_dunno(
    factory: PolicyFactory, engine: Engine
) -> None:
    proto, tr = connect(factory)
    act(engine, OperatorVerb.HOLD)
    proto.dataReceived(request("END-OF-MESSAGE", recipient_count=1))
    assert tr.value().startswith(b"action=HOLD extrusion: held for review")
    tr.clear()
    act(engine, OperatorVerb.BLOCK)
    proto.dataReceived(request())
    assert tr.value().startswith(b"action=REJECT 5.7.1 extrusion: sending refused")
    tr.clear()
    act(engine, OperatorVerb.RELEASE)
    proto.dataReceived(request())
    assert tr.value() == reply("DUNNO")


def test_sender_key_is_the_client_address_without_sasl(
    factory: PolicyFactory, engine: Engine
) -> None:
    act(engine, OperatorVerb.BLOCK, "ip:192.0.2.50")
    proto, tr = connect(factory)
    proto.dataReceived(request(sasl_username="", client_address="192.0.2.50"))
    assert tr.value().startswith(b"action=REJECT ")
    tr.clear()
    proto.dataReceived(request(sasl_username="", client_address="192.0.2.51"))
    assert tr.value() == reply("DUNNO")


def test_states_without_a_verdict_get_dunno(factory: PolicyFactory, engine: Engine) -> None:
    act(engine, OperatorVerb.BLOCK)
    proto, tr = connect(factory)
    proto.dataReceived(request("VRFY") + request("ETRN"))
    assert tr.value() == reply("DUNNO") * 2
    assert metric(factory, "extrusion_policy_requests_total", state="other") == 2


def test_blocked_sender_is_refused_already_at_mail(factory: PolicyFactory, engine: Engine) -> None:
    act(engine, OperatorVerb.BLOCK)
    proto, tr = connect(factory)
    proto.dataReceived(request("MAIL", recipient=""))
    assert tr.value().startswith(b"action=REJECT 5.7.1 ")


# --- bad input: no reply, one log line, the connection closed -----------------------------

BAD = [
    ("line_too_long", b"request=smtpd_access_policy\nhelo_name=" + b"x" * 600 + b"\n\n"),
    ("too_many_attributes", b"request=smtpd_access_policy\n" + b"a=b\n" * 41 + b"\n"),
    ("not_a_policy_request", b"protocol_state=RCPT\nsender=a@b\n\n"),
    ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n"),
    ("garbage", b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"),
]


@pytest.mark.parametrize(("kind", "data"), BAD, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BAD)])
def test_bad_input_closes_without_a_reply_and_logs_once(
    factory: PolicyFactory, kind: str, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    proto, tr = connect(factory)
    with caplog.at_level(logging.INFO, logger="extrusion.policyd"):
        proto.dataReceived(data)
        proto.dataReceived(request())  # whatever follows is ignored
        proto.connectionLost()
    assert tr.value() == b""
    assert tr.disconnecting
    lines = [r for r in caplog.records if "127.0.0.1:40000" in r.getMessage()]
    assert len(lines) == 1 and kind in lines[0].getMessage()
    assert metric(factory, "extrusion_policy_bad_input_total", kind=kind) == 1


def test_requests_before_bad_input_are_answered_first(factory: PolicyFactory) -> None:
    proto, tr = connect(factory)
    proto.dataReceived(request() + request() + b"request=other\n\n")
    assert tr.value() == reply("DUNNO") * 2
    assert tr.disconnecting


def test_bad_input_on_one_connection_leaves_the_others_alone(factory: PolicyFactory) -> None:
    good, good_tr = connect(factory)
    bad, bad_tr = connect(factory)
    good.dataReceived(request()[:50])
    bad.dataReceived(b"\x00\x01\x02\n")
    good.dataReceived(request()[50:])
    assert bad_tr.disconnecting and bad_tr.value() == b""
    assert good_tr.value() == reply("DUNNO") and not good_tr.disconnecting


def test_silent_client_is_closed_after_the_idle_timeout(
    factory: PolicyFactory, clock: task.Clock
) -> None:
    _proto, tr = connect(factory)
    clock.advance(IDLE - 1)
    assert not tr.disconnecting
    clock.advance(2)
    assert tr.disconnecting and tr.value() == b""
    assert metric(factory, "extrusion_policy_bad_input_total", kind="idle_mid_request") == 0


def test_activity_keeps_a_connection_open(factory: PolicyFactory, clock: task.Clock) -> None:
    proto, tr = connect(factory)
    for _ in range(5):
        clock.advance(IDLE - 1)
        proto.dataReceived(request())
    assert not tr.disconnecting
    assert tr.value() == reply("DUNNO") * 5


def test_client_stalling_mid_request_is_closed_and_counted(
    factory: PolicyFactory, clock: task.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    proto, tr = connect(factory)
    proto.dataReceived(request()[:30])
    with caplog.at_level(logging.INFO, logger="extrusion.policyd"):
        clock.advance(IDLE + 1)
    assert tr.disconnecting and tr.value() == b""
    assert metric(factory, "extrusion_policy_bad_input_total", kind="idle_mid_request") == 1
    assert len([r for r in caplog.records if "idle_mid_request" in r.getMessage()]) == 1


def test_disconnect_mid_request_is_logged_once(
    factory: PolicyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    proto, _tr = connect(factory)
    proto.dataReceived(request()[:40])
    with caplog.at_level(logging.INFO, logger="extrusion.policyd"):
        proto.connectionLost()
    assert metric(factory, "extrusion_policy_bad_input_total", kind="disconnect_mid_request") == 1
    assert len([r for r in caplog.records if "middle of a request" in r.getMessage()]) == 1
    assert metric(factory, "extrusion_policy_connections") == 0


def test_clean_disconnect_between_requests_is_not_an_error(factory: PolicyFactory) -> None:
    proto, _tr = connect(factory)
    proto.dataReceived(request())
    proto.connectionLost()
    assert metric(factory, "extrusion_policy_bad_input_total", kind="disconnect_mid_request") == 0


# --- who may ask ---------------------------------------------------------------------------


def test_clients_outside_allowed_clients_are_refused_and_logged_once(
    factory: PolicyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="extrusion.policyd"):
        for port in (1, 2, 3):
            assert factory.buildProtocol(IPv4Address("TCP", "203.0.113.9", port)) is None
    assert metric(factory, "extrusion_policy_refused_clients_total") == 3
    assert len([r for r in caplog.records if "203.0.113.9" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("addr", "allowed"),
    [
        (IPv4Address("TCP", "127.0.0.2", 1), True),
        (IPv6Address("TCP", "::1", 1), True),
        (IPv6Address("TCP", "::ffff:127.0.0.1", 1), True),  # v4-mapped on a tcp6 listener
        (IPv6Address("TCP", "2001:db8::1", 1), False),
        (IPv4Address("TCP", "10.0.0.1", 1), False),
        (UNIXAddress(b"/run/extrusion/policy.sock"), True),  # the socket's mode decides
    ],
)
def test_allowed_clients(factory: PolicyFactory, addr: Any, allowed: bool) -> None:
    assert factory.is_allowed(addr) is allowed


# --- failing open --------------------------------------------------------------------------


def test_no_engine_yet_means_the_default_action(clock: task.Clock) -> None:
    factory = build(Holder(None), clock, default="DEFER_IF_PERMIT 4.3.0 try again later")
    proto, tr = connect(factory)
    proto.dataReceived(request())
    assert tr.value() == reply("DEFER_IF_PERMIT 4.3.0 try again later")
    assert metric(factory, "extrusion_policy_decisions_total", action="default") == 1


def test_replies_are_ascii_alone_and_together(clock: task.Clock) -> None:
    # Each reply line is encoded on its own (and remembered): one request per chunk
    # or several pipelined, the bytes are the same, a non-ASCII letter a "?".
    factory = build(Holder(None), clock, default="DEFER_IF_PERMIT 4.3.0 später")
    proto, tr = connect(factory)
    proto.dataReceived(request())
    alone = tr.value()
    tr.clear()
    proto.dataReceived(request() + request())
    assert alone == reply("DEFER_IF_PERMIT 4.3.0 sp?ter")
    assert tr.value() == alone * 2


class BrokenEngine:
    """Fault injection: the engine itself raising, which a real one does not do on purpose."""

    def __init__(self, real: Engine) -> None:
        self.real = real
        self.broken = True

    def sender_key(self, **kw: Any) -> str:
        return self.real.sender_key(**kw)

    def decide(self, *args: Any, **kw: Any) -> Decision:
        if self.broken:
            raise RuntimeError("engine exploded")
        return self.real.decide(*args, **kw)


def test_engine_failure_answers_the_default_and_recovers(
    engine: Engine, clock: task.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    broken = BrokenEngine(engine)
    factory = build(Holder(broken), clock, default="DUNNO")
    proto, tr = connect(factory)
    act(engine, OperatorVerb.BLOCK)
    with caplog.at_level(logging.INFO, logger="extrusion.policyd"):
        for _ in range(10):
            proto.dataReceived(request())
    assert tr.value() == reply("DUNNO") * 10
    assert len([r for r in caplog.records if "engine exploded" in r.getMessage()]) == 1
    assert metric(factory, "extrusion_store_errors_total", operation="decide") == 10
    tr.clear()
    broken.broken = False
    proto.dataReceived(request())
    assert tr.value().startswith(b"action=REJECT ")


# --- draining ------------------------------------------------------------------------------


def test_drain_closes_idle_connections_and_lets_busy_ones_finish(factory: PolicyFactory) -> None:
    idle, idle_tr = connect(factory)
    busy, busy_tr = connect(factory)
    busy.dataReceived(request()[:60])
    drained = factory.drain()
    assert idle_tr.disconnecting and not busy_tr.disconnecting
    idle.connectionLost()
    assert not drained.called
    busy.dataReceived(request()[60:])
    assert busy_tr.value() == reply("DUNNO")  # the request in flight got its answer
    assert busy_tr.disconnecting
    busy.connectionLost()
    assert drained.called


# --- decisions to access(5) actions --------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (Decision(Action.CONTINUE, State.OK, 0.0), "DUNNO"),
        (Decision(Action.TEMPFAIL, State.THROTTLED, 25.0, 451, "4.7.1", "slow down"),
         "DEFER_IF_PERMIT 4.7.1 slow down"),
        (Decision(Action.TEMPFAIL, State.OK, 0.0, 451, "2.0.0", ""),
         "DEFER_IF_PERMIT 4.7.1 Too much mail from you for now, try again later"),
        (Decision(Action.HOLD, State.HELD, 45.0, 250, "2.0.0", "held"), "HOLD held"),
        (Decision(Action.REJECT, State.BLOCKED, 0.0, 550, "5.7.1", "go away"),
         "REJECT 5.7.1 go away"),
        (Decision(Action.REJECT, State.BLOCKED, 0.0, 550, "4.7.1", "x"), "REJECT 5.7.1 x"),
        (Decision(Action.REJECT, State.BLOCKED, 0.0, 550, "5.7.1", "two\nlines\r\x00"),
         "REJECT 5.7.1 two lines"),
        (Decision(Action.REJECT, State.BLOCKED, 0.0, 550, "5.7.1", "gesperrt für Sie"),
         "REJECT 5.7.1 gesperrt f?r Sie"),
    ],
)
def test_action_for(decision: Decision, expected: str) -> None:
    assert action_for(decision) == expected


def test_the_same_words_make_the_same_line_whatever_the_reason() -> None:
    # A sender over its budget is answered at each recipient: its line is made once,
    # from what the client sees (action, code, text), never from the operator's reason.
    first = Decision(Action.TEMPFAIL, State.OK, 0.0, 451, "4.7.1", "too many\nrecipients",
                     "rate limit [default] recipients per hour: 10/10")
    later = Decision(Action.TEMPFAIL, State.WATCH, 3.5, 451, "4.7.1", "too many\nrecipients",
                     "rate limit [default+watch] recipients per hour: 5/5")
    assert action_for(first) == action_for(later) == "DEFER_IF_PERMIT 4.7.1 too many recipients"
    held = Decision(Action.HOLD, State.HELD, 9.0, 250, "2.0.0", "too many\nrecipients")
    assert action_for(held) == "HOLD too many recipients"


def test_reply_text_is_bounded() -> None:
    d = Decision(Action.REJECT, State.BLOCKED, 0.0, 550, "5.7.1", "x" * 5000)
    assert len(action_for(d)) < 250


def test_stage_per_protocol_state(engine: Engine, clock: task.Clock) -> None:
    seen: list[tuple[Stage, int, bool]] = []
    recipients: list[str] = []

    class Spy:
        def sender_key(self, **kw: Any) -> str:
            return engine.sender_key(**kw)

        def decide(self, sender: str, stage: Stage, n: int, now: float, **kw: Any) -> Decision:
            seen.append((stage, n, kw["count"]))
            recipients.append(kw["recipient"])
            return engine.decide(sender, stage, n, now, **kw)

    factory = build(Holder(Spy()), clock)
    proto, _ = connect(factory)
    for state in ("CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE"):
        proto.dataReceived(request(state, recipient_count=4 if state != "RCPT" else 0))
    assert seen == [
        (Stage.CONNECT, 4, False), (Stage.HELO, 4, False), (Stage.HELO, 4, False),
        (Stage.MAIL, 4, False), (Stage.RCPT, 1, True), (Stage.DATA, 4, False),
        (Stage.EOM, 4, True),
    ]
    # The recipient goes with every request (a throttled sender's refused ones are evidence).
    assert recipients == ["", "", "", "", "bob@remote.example", "", ""]


# --- the HELO into the MTA's log -------------------------------------------------------------


@pytest.mark.parametrize(("helo", "state", "expected"), [
    ("JOHNS-PC", "END-OF-MESSAGE", "INFO extrusion: suspicious HELO: helo_no_dot"),
    ("pc17.customer.example", "END-OF-MESSAGE", "DUNNO"),  # a clean HELO adds no line
    ("JOHNS-PC", "RCPT", "DUNNO"),  # once per message, where Postfix knows the queue id
])
def test_a_suspect_helo_is_written_into_the_log_at_end_of_message(
    factory: PolicyFactory, helo: str, state: str, expected: str
) -> None:
    proto, tr = connect(factory)
    proto.dataReceived(request(state, helo_name=helo, queue_id="4F2A1B3C9D",
                               recipient_count=1))
    assert tr.value() == reply(expected)
