"""A real listening policy server (makeService on loopback) driven by a table of exchanges.

The second of three depths. Every exchange is sent whole, one byte at a time,
and all good ones pipelined on one connection; plus the behaviours that need
real sockets: idle timeout, other connections undisturbed, allowed_clients,
reload without dropping connections, drain on stop, unix sockets.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from twisted.internet import defer, threads
from twisted.trial import unittest

from extrusion.config import Config
from extrusion.policyd.service import PolicydService
from extrusion.scoring.events import OperatorAction, OperatorVerb
from extrusion.service import makeService

from .helpers import toml_text
from .test_policyd_support import (
    ALICE,
    make_config,
    read_replies,
    read_until_closed,
    request,
)


@dataclass(frozen=True)
class Exchange:
    name: str
    send: bytes
    expect: bytes | None  # the reply's start; None: closed without a reply
    exact: bool = True


HELD = "held@customer.example"
BLOCKED_IP = "192.0.2.66"

EXCHANGES = [
    Exchange("rcpt", request("RCPT"), b"action=DUNNO\n\n"),
    Exchange("end-of-message", request("END-OF-MESSAGE", recipient_count=3, size=2206,
                                       queue_id="4XyZ1k2ABCz"), b"action=DUNNO\n\n"),
    Exchange("data", request("DATA", recipient_count=2), b"action=DUNNO\n\n"),
    Exchange("empty values", request(sasl_username="", sasl_method="", helo_name="",
                                     client_name="", queue_id=""), b"action=DUNNO\n\n"),
    Exchange("zero values", request("END-OF-MESSAGE", recipient_count=0, size=0),
             b"action=DUNNO\n\n"),
    Exchange("unknown attributes", request(ccert_fingerprint="C2:9D", stress="yes",
                                           policy_context="submission", x_future="1"),
             b"action=DUNNO\n\n"),
    Exchange("minimal request", b"request=smtpd_access_policy\n\n", b"action=DUNNO\n\n"),
    Exchange("vrfy", request("VRFY", sasl_username=HELD), b"action=DUNNO\n\n"),
    Exchange("blocked ip", request(sasl_username="", client_address=BLOCKED_IP),
             b"action=REJECT 5.7.1 extrusion: sending refused", exact=False),
    Exchange("held at rcpt", request(sasl_username=HELD),
             b"action=HOLD extrusion: held for review", exact=False),
    Exchange("held at end-of-message",
             request("END-OF-MESSAGE", sasl_username=HELD, recipient_count=1),
             b"action=HOLD extrusion: held for review", exact=False),
    Exchange("no request attribute", b"protocol_state=RCPT\nsender=a@b\n\n", None),
    Exchange("wrong request type", b"request=smtpd_other_policy\n\n", None),
    Exchange("line too long", b"request=smtpd_access_policy\nhelo_name=" + b"h" * 3000 + b"\n\n",
             None),
    Exchange("too many attributes", b"request=smtpd_access_policy\n" + b"x=1\n" * 120 + b"\n",
             None),
    Exchange("binary junk", bytes(range(1, 32)) + b"\xff\xfe\n\n", None),
    Exchange("http", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", None),
]
GOOD = [e for e in EXCHANGES if e.expect is not None]


def matches(got: bytes, e: Exchange) -> bool:
    assert e.expect is not None
    return got == e.expect if e.exact else got.startswith(e.expect) and got.endswith(b"\n\n")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def exchange(port: int, data: bytes, n: int, *, bytewise: bool = False) -> list[bytes] | bytes:
    """Send `data`; read `n` replies, or everything until the server closes (n=0)."""
    with connect(port) as s:
        try:
            if bytewise:
                for i in range(len(data)):
                    s.sendall(data[i : i + 1])
            else:
                s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            if n:
                raise
            # The server hung up on bad input before we finished sending it.
        if n:
            return read_replies(s, n)
        try:
            return read_until_closed(s)
        except ConnectionResetError:  # closed with our unread bytes in its buffer
            return b""


class ServerCase(unittest.TestCase):
    """Starts the whole daemon on loopback with a SQLite store in a temp dir."""

    sections: ClassVar[dict[str, dict[str, Any]]] = {}

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> None:
        self.tmp = tmp_path

    def config(self) -> Config:
        return make_config(self.tmp, **self.sections)

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.cfg = self.config()
        self.svc: PolicydService = makeService(self.cfg)
        self.svc.startService()
        yield self.svc.when_ready()
        assert self.svc.policy is not None
        self.port = self.svc.policy.tcp_port
        self.engine: Any = self.svc.engines.engine
        self.assertIsNotNone(self.engine)

    @defer.inlineCallbacks
    def tearDown(self) -> Any:
        if self.svc.running:
            yield self.svc.stopService()

    def in_thread(self, fn: Any, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        return threads.deferToThread(fn, *args, **kw)

    @defer.inlineCallbacks
    def until(self, what: str, probe: Any, timeout: float = 30.0, every: float = 0.2) -> Any:
        """Poll `probe` in a thread until it returns something true; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = yield self.in_thread(probe)
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}{self.diagnostics()}")
            yield self.in_thread(time.sleep, every)

    def diagnostics(self) -> str:
        """What a timed-out wait should show besides its name."""
        return ""

    def operate(self, sender: str, verb: OperatorVerb) -> None:
        self.engine.operator(OperatorAction(time.time(), sender, verb, "noc", "test"))


class TableTests(ServerCase):
    def setUp(self) -> Any:
        d = super().setUp()

        def pin(_: Any) -> None:
            self.operate(f"sasl:{HELD}", OperatorVerb.HOLD)
            self.operate(f"ip:{BLOCKED_IP}", OperatorVerb.BLOCK)

        return d.addCallback(pin)

    @defer.inlineCallbacks
    def test_each_exchange_whole_and_byte_by_byte(self) -> Any:
        for e in EXCHANGES:
            for bytewise in (False, True):
                got = yield self.in_thread(exchange, self.port, e.send, 1 if e.expect else 0,
                                           bytewise=bytewise)
                if e.expect is None:
                    self.assertEqual(got, b"", f"{e.name}: expected no reply")
                else:
                    self.assertEqual(len(got), 1, e.name)
                    self.assertTrue(matches(got[0], e), f"{e.name}: got {got[0]!r}")

    @defer.inlineCallbacks
    def test_all_good_exchanges_pipelined_on_one_connection(self) -> Any:
        data = b"".join(e.send for e in GOOD) * 3
        got = yield self.in_thread(exchange, self.port, data, len(GOOD) * 3)
        self.assertEqual(len(got), len(GOOD) * 3)
        for e, r in zip(GOOD * 3, got, strict=True):
            self.assertTrue(matches(r, e), f"{e.name}: got {r!r}")

    @defer.inlineCallbacks
    def test_pipelined_and_bytewise_together(self) -> Any:
        data = b"".join(e.send for e in GOOD)
        got = yield self.in_thread(exchange, self.port, data, len(GOOD), bytewise=True)
        self.assertEqual([matches(r, e) for e, r in zip(GOOD, got, strict=True)],
                         [True] * len(GOOD))


def _mid_request_then_finish(port: int, bad: bytes) -> tuple[list[bytes], bytes]:
    """A good client half-way through a request while a bad one comes and goes."""
    with connect(port) as good:
        first = request()
        good.sendall(first[:40])
        closed = exchange(port, bad, 0)
        good.sendall(first[40:])
        replies = read_replies(good, 1)
        good.sendall(request())
        replies += read_replies(good, 1)
    assert isinstance(closed, bytes)
    return replies, closed


def _silent_client(port: int) -> tuple[float, bytes]:
    with connect(port) as s:
        t0 = time.monotonic()
        data = read_until_closed(s)
        return time.monotonic() - t0, data


def _disconnect_mid_request(port: int) -> list[bytes]:
    with connect(port) as s:
        s.sendall(request()[:25])
    with connect(port) as s:
        s.sendall(request())
        return read_replies(s, 1)


class ConnectionTests(ServerCase):
    sections: ClassVar[dict[str, dict[str, Any]]] = {"policyd": {"idle_timeout": 0.5}}

    @defer.inlineCallbacks
    def test_bad_clients_do_not_disturb_a_good_one(self) -> Any:
        for e in EXCHANGES:
            if e.expect is not None:
                continue
            replies, closed = yield self.in_thread(_mid_request_then_finish, self.port, e.send)
            self.assertEqual(closed, b"", e.name)
            self.assertEqual(replies, [b"action=DUNNO\n\n"] * 2, e.name)

    @defer.inlineCallbacks
    def test_a_client_that_says_nothing_is_closed_after_the_idle_timeout(self) -> Any:
        waited, data = yield self.in_thread(_silent_client, self.port)
        self.assertEqual(data, b"")
        self.assertGreaterEqual(waited, 0.4)
        self.assertLess(waited, 5)

    @defer.inlineCallbacks
    def test_a_client_that_disconnects_mid_request_leaves_the_server_serving(self) -> Any:
        replies = yield self.in_thread(_disconnect_mid_request, self.port)
        self.assertEqual(replies, [b"action=DUNNO\n\n"])
        reg = self.svc.metrics.registry
        for _ in range(50):  # the server notices the lost connection asynchronously
            value = reg.get_sample_value("extrusion_policy_bad_input_total",
                                         {"kind": "disconnect_mid_request"})
            if value:
                break
            yield self.in_thread(time.sleep, 0.05)
        self.assertEqual(value, 1)


def _refused(port: int) -> bytes:
    with connect(port) as s:
        try:
            s.sendall(request())
        except OSError:
            return b""
        try:
            return read_until_closed(s, timeout=5)
        except ConnectionResetError:
            return b""


class AllowedClientsTests(ServerCase):
    sections: ClassVar[dict[str, dict[str, Any]]] = {
        "policyd": {"allowed_clients": ["10.0.0.0/8"]}
    }

    @defer.inlineCallbacks
    def test_loopback_is_refused_when_not_allowed(self) -> Any:
        got = yield self.in_thread(_refused, self.port)
        self.assertEqual(got, b"")
        self.assertEqual(
            self.svc.metrics.registry.get_sample_value("extrusion_policy_refused_clients_total"),
            1,
        )


class ReloadTests(ServerCase):
    def config(self) -> Config:
        cfg = make_config(self.tmp)
        self.path = Path(cfg.path)
        self.write({})
        from extrusion import config as configmod

        return configmod.load(self.path)

    def write(self, extra: dict[str, Any]) -> None:
        data: dict[str, Any] = {
            "general": {"hostname": "mta1.test"},
            "store": {"url": f"sqlite:///{self.tmp / 'extrusion.db'}",
                      "spool_dir": str(self.tmp / "spool")},
            "policyd": {"listen": "tcp:0:interface=127.0.0.1", "hold_queued_mail": False,
                        "flush_seconds": 0.2},
            "api": {"listen": "tcp:0:interface=127.0.0.1"},
            "milter": {"enabled": False},
        }
        data.update(extra)
        self.path.write_text(toml_text(data))

    @defer.inlineCallbacks
    def test_reload_applies_overrides_without_dropping_connections(self) -> Any:
        s = yield self.in_thread(connect, self.port)
        try:
            yield self.in_thread(s.sendall, request())
            got = yield self.in_thread(read_replies, s, 1)
            self.assertEqual(got, [b"action=DUNNO\n\n"])
            self.write({"overrides": [{"match": f"sasl:{ALICE}", "action": "block",
                                       "reason": "abuse ticket 12"}]})
            ok = yield self.svc.reload_from_file()
            self.assertTrue(ok)
            yield self.in_thread(s.sendall, request())  # same connection, new config
            got = yield self.in_thread(read_replies, s, 1)
            self.assertTrue(got[0].startswith(b"action=REJECT 5.7.1 "), got)
        finally:
            s.close()

    @defer.inlineCallbacks
    def test_a_bad_config_on_reload_is_refused_and_the_old_one_kept(self) -> Any:
        self.write({"overrides": [{"match": f"sasl:{ALICE}", "action": "block"}]})
        ok = yield self.svc.reload_from_file()
        self.assertTrue(ok)
        good = self.svc.config
        for broken in ('[policyd]\nlisten = "nonsense"\n', "[policyd\n", "[nosuchsection]\n",
                       '[policyd]\ndefault_action = "PERMIT"\n'):
            self.path.write_text(broken)
            ok = yield self.svc.reload_from_file()
            self.assertFalse(ok, broken)
            self.assertIs(self.svc.config, good)
        got = yield self.in_thread(exchange, self.port, request(), 1)
        self.assertTrue(got[0].startswith(b"action=REJECT "), got)

    @defer.inlineCallbacks
    def test_reload_changes_the_default_action_and_limits(self) -> Any:
        self.write({"policyd": {"listen": "tcp:0:interface=127.0.0.1", "hold_queued_mail": False,
                                "default_action": "DEFER_IF_PERMIT 4.3.0 later",
                                "max_line_bytes": 100}})
        ok = yield self.svc.reload_from_file()
        self.assertTrue(ok)
        self.assertEqual(self.svc.responder.default_action, "DEFER_IF_PERMIT 4.3.0 later")
        long_line = b"request=smtpd_access_policy\nhelo_name=" + b"x" * 150 + b"\n\n"
        got = yield self.in_thread(exchange, self.port, long_line, 0)
        self.assertEqual(got, b"")


    @defer.inlineCallbacks
    def test_reload_warns_that_the_milter_attach_map_needs_a_restart(self) -> Any:
        self.write({"milter": {"enabled": False, "attach": "always",
                               "attach_listen": "tcp:10999:interface=127.0.0.1"}})
        with self.assertLogs("extrusion.policyd", "WARNING") as logs:
            ok = yield self.svc.reload_from_file()
        self.assertTrue(ok)
        warned = "\n".join(logs.output)
        self.assertIn("milter.attach changed; restart to apply it", warned)
        self.assertIn("milter.attach_listen changed; restart to apply it", warned)
        self.assertNotIn("milter.attach_others", warned)

def _half_request(port: int) -> socket.socket:
    s = connect(port)
    s.sendall(request()[:50])
    return s


class DrainTests(ServerCase):
    @defer.inlineCallbacks
    def test_stop_drains_the_request_in_flight_then_closes(self) -> Any:
        busy = yield self.in_thread(_half_request, self.port)
        idle = yield self.in_thread(connect, self.port)
        yield self.in_thread(time.sleep, 0.2)  # both accepted
        stopping = self.svc.stopService()
        try:
            closed = yield self.in_thread(read_until_closed, idle)
            self.assertEqual(closed, b"")  # idle: closed at once
            with self.assertRaises(OSError):  # no new connections
                yield self.in_thread(connect, self.port)
            self.assertFalse(stopping.called)
            yield self.in_thread(busy.sendall, request()[50:])
            rest = yield self.in_thread(read_until_closed, busy)
            self.assertEqual(rest, b"action=DUNNO\n\n")  # answered, then closed
            yield stopping
        finally:
            busy.close()
            idle.close()


class UnixSocketTests(ServerCase):
    def config(self) -> Config:
        self.sock_path = self.tmp / "policy.sock"
        return make_config(self.tmp, policyd={"listen": f"unix:{self.sock_path}"})

    def setUp(self) -> Any:
        # Unix listener: there is no TCP port to read, so set up by hand.
        self.cfg = self.config()
        self.svc = makeService(self.cfg)
        self.svc.startService()
        return self.svc.when_ready()

    @defer.inlineCallbacks
    def test_serves_on_a_unix_socket(self) -> Any:
        def ask() -> list[bytes]:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.sock_path))
                s.sendall(request() + request("END-OF-MESSAGE", recipient_count=1))
                return read_replies(s, 2)

        got = yield self.in_thread(ask)
        self.assertEqual(got, [b"action=DUNNO\n\n"] * 2)
