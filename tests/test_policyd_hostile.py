"""The policy server against hostile and careless clients, over real sockets on loopback.

A request followed at once by a half-close is answered; a trickled request
is cut after `request_timeout`, while a quiet reused connection (Postfix's
way) is not; connections end after `max_connection_seconds`, between
requests; one address holds at most `max_connections_per_client`; and a
client that misbehaves on every connection gets a few warning lines a
minute and one summary, not one line each.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Any, ClassVar

from twisted.internet import defer

from .test_policyd_server import ServerCase, connect
from .test_policyd_support import read_replies, read_until_closed, request

DUNNO = b"action=DUNNO\n\n"


def half_closed(port: int) -> bytes:
    with connect(port) as s:
        s.sendall(request())
        s.shutdown(socket.SHUT_WR)
        return read_until_closed(s)


def trickle(port: int, every: float) -> tuple[float, bytes]:
    """Send a request a few bytes at a time until the server hangs up; (seconds, reply)."""
    data = request() * 100
    t0 = time.monotonic()
    with connect(port) as s:
        try:
            for i in range(0, len(data), 4):
                s.sendall(data[i : i + 4] if data[i : i + 4] != b"\n\n" else b"\n")
                time.sleep(every)
                if time.monotonic() - t0 > 8:
                    break
            return time.monotonic() - t0, read_until_closed(s, timeout=2)
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - t0, b""


def pause_between_requests(port: int, pause: float) -> list[bytes]:
    with connect(port) as s:
        s.sendall(request())
        first = read_replies(s, 1)
        time.sleep(pause)
        s.sendall(request())
        return first + read_replies(s, 1)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class HalfClose(ServerCase):
    @defer.inlineCallbacks
    def test_a_request_then_a_half_close_is_answered(self) -> Any:
        answers = yield defer.gatherResults(
            [self.in_thread(half_closed, self.port) for _ in range(50)])
        self.assertEqual(answers, [DUNNO] * 50)


class Slowloris(ServerCase):
    sections: ClassVar[dict[str, dict[str, Any]]] = {
        "policyd": {"request_timeout": 0.5, "idle_timeout": 30.0}}

    @defer.inlineCallbacks
    def test_a_trickled_request_is_cut_after_request_timeout(self) -> Any:
        took, got = yield self.in_thread(trickle, self.port, 0.05)
        self.assertLess(took, 5.0)
        self.assertEqual(got, b"")
        reg = self.svc.metrics.registry
        self.assertEqual(
            reg.get_sample_value("extrusion_policy_bad_input_total", {"kind": "request_timeout"}),
            1.0)

    @defer.inlineCallbacks
    def test_a_quiet_connection_between_requests_is_kept(self) -> Any:
        # Postfix reuses an idle connection: quiet longer than request_timeout is fine.
        got = yield self.in_thread(pause_between_requests, self.port, 1.5)
        self.assertEqual(got, [DUNNO, DUNNO])


class Lifetime(ServerCase):
    sections: ClassVar[dict[str, dict[str, Any]]] = {
        "policyd": {"max_connection_seconds": 1.0}}

    @defer.inlineCallbacks
    def test_a_connection_is_closed_after_its_lifetime_between_requests(self) -> Any:
        def answered_then_closed() -> tuple[list[bytes], bytes, float]:
            t0 = time.monotonic()
            with connect(self.port) as s:
                s.sendall(request())
                first = read_replies(s, 1)
                rest = read_until_closed(s)
                return first, rest, time.monotonic() - t0

        first, rest, took = yield self.in_thread(answered_then_closed)
        self.assertEqual(first, [DUNNO])
        self.assertEqual(rest, b"")
        self.assertLess(took, 5.0)


class PerClientCap(ServerCase):
    sections: ClassVar[dict[str, dict[str, Any]]] = {
        "policyd": {"max_connections_per_client": 3}}

    @defer.inlineCallbacks
    def test_the_fourth_connection_from_one_address_is_refused(self) -> Any:
        def scenario() -> tuple[list[bytes], bytes, list[bytes]]:
            held = [connect(self.port) for _ in range(3)]
            try:
                for s in held:
                    s.sendall(request())
                answers = [read_replies(s, 1)[0] for s in held]
                with connect(self.port) as extra:
                    try:
                        extra.sendall(request())
                        refused = read_until_closed(extra)
                    except (BrokenPipeError, ConnectionResetError):
                        refused = b""
            finally:
                held.pop().close()
            time.sleep(0.3)  # the server sees the close
            with connect(self.port) as again:
                again.sendall(request())
                after = read_replies(again, 1)
            for s in held:
                s.close()
            return answers, refused, after

        answers, refused, after = yield self.in_thread(scenario)
        self.assertEqual(answers, [DUNNO] * 3)
        self.assertEqual(refused, b"")
        self.assertEqual(after, [DUNNO])


class ThrottledWarnings(ServerCase):
    @defer.inlineCallbacks
    def test_a_bad_client_gets_ten_lines_a_minute_not_one_per_connection(self) -> Any:
        collect = Collect()
        logger = logging.getLogger("extrusion.policyd")
        logger.addHandler(collect)
        self.addCleanup(logger.removeHandler, collect)

        def bad(n: int) -> None:
            for _ in range(n):
                with connect(self.port) as s:
                    s.sendall(b"GET / HTTP/1.1\r\n\x1b[2J\r\n\r\n")
                    with contextlib.suppress(ConnectionResetError):
                        read_until_closed(s)

        yield self.in_thread(bad, 60)
        reg = self.svc.metrics.registry
        yield self.until("every bad connection to be counted", lambda: (
            reg.get_sample_value("extrusion_policy_bad_input_total", {"kind": "garbage"}) == 60))
        warned = [x for x in collect.lines if x.startswith("policy client 127.0.0.1")]
        self.assertEqual(len(warned), 10)
        self.assertTrue(all("\x1b" not in x for x in collect.lines))
        # When the minute is over, one line says how many were not logged.
        self.svc.policy_factory.warnings.sweep(time.time() + 61)  # type: ignore[union-attr]
        summary = [x for x in collect.lines if "not logged" in x]
        self.assertEqual(summary, ["policy client 127.0.0.1: 50 more warnings in 60s not logged"])
