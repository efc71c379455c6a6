"""The operator API over real HTTP on loopback: auth, senders, actions, metrics, health."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, ClassVar

from twisted.internet import defer

from .test_policyd_server import ServerCase
from .test_policyd_support import ALICE, read_replies, request

TOKEN = "s3cret-token"
KEY = f"sasl:{ALICE}"


def http(
    port: int, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
    content_type: str = "application/json", raw: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def ask_policy(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return read_replies(s, 1)[0]


class ApiCase(ServerCase):
    sections: ClassVar[dict[str, dict[str, Any]]] = {"api": {"token": TOKEN}}

    def setUp(self) -> Any:
        d = super().setUp()

        def ports(_: Any) -> Any:
            assert self.svc.api_listener is not None
            self.api = self.svc.api_listener.tcp_port
            # Ready is not judging: a daemon whose first read of the store failed (a
            # PostgreSQL refusing connections for a moment on a loaded machine) answers
            # the default action until a refresh succeeds, and these tests assert the
            # answers to their actions at once.
            return self.until("the daemon judging",
                              lambda: self.svc.engines.judging is not None)

        return d.addCallback(ports)

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> defer.Deferred[Any]:
        return self.in_thread(http, self.api, method, path, body, **kw)

    @defer.inlineCallbacks
    def json_call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        code, headers, raw = yield self.call(method, path, body, **kw)
        self.assertEqual(headers.get("Content-Type"), "application/json")
        return code, json.loads(raw)


class AuthTests(ApiCase):
    @defer.inlineCallbacks
    def test_healthz_needs_no_token(self) -> Any:
        code, body = yield self.json_call("GET", "/healthz", token=None)
        self.assertEqual(code, 200)
        self.assertEqual((body["status"], body["engine"], body["store"]), ("ok", "open", "ok"))

    @defer.inlineCallbacks
    def test_everything_else_needs_the_bearer_token(self) -> Any:
        for token in (None, "wrong", TOKEN + "x", ""):
            for method, path in (("GET", "/senders"), ("GET", "/metrics"),
                                 ("POST", f"/senders/{KEY}/block")):
                code, headers, _ = yield self.call(method, path, {"reason": "r"}, token=token)
                self.assertEqual(code, 401, (token, path))
                self.assertIn("Bearer", headers.get("WWW-Authenticate", ""))
        code, _, _ = yield self.call("GET", "/senders")
        self.assertEqual(code, 200)


class SenderTests(ApiCase):
    @defer.inlineCallbacks
    def flushed(self) -> Any:
        yield self.in_thread(self.engine.flush)

    @defer.inlineCallbacks
    def test_block_then_the_policy_server_refuses_and_the_audit_trail_says_who(self) -> Any:
        code, body = yield self.json_call(
            "POST", f"/senders/{urllib.parse.quote(KEY)}/block",
            {"reason": "spam run, ticket 4411", "who": "carol"},
        )
        self.assertEqual(code, 200)
        self.assertEqual(body["change"]["new"], "blocked")
        self.assertEqual(body["change"]["who"], "carol")
        got = yield self.in_thread(ask_policy, self.port, request())
        self.assertTrue(got.startswith(b"action=REJECT 5.7.1 "), got)
        yield self.flushed()
        code, detail = yield self.json_call("GET", f"/senders/{KEY}")
        self.assertEqual(code, 200)
        self.assertEqual(detail["state"], "blocked")
        self.assertEqual(detail["pinned"], "block")
        last = detail["audit"][-1]
        self.assertEqual((last["new"], last["who"]), ("blocked", "carol"))
        self.assertIn("ticket 4411", last["reason"])
        code, listed = yield self.json_call("GET", "/senders?state=blocked")
        self.assertEqual([s["sender"] for s in listed["senders"]], [KEY])
        code, listed = yield self.json_call("GET", "/senders?state=held")
        self.assertEqual(listed, {"count": 0, "senders": []})

    @defer.inlineCallbacks
    def test_hold_release_allow(self) -> Any:
        code, body = yield self.json_call("POST", f"/senders/{KEY}/hold", {"reason": "check"})
        self.assertEqual((code, body["change"]["new"]), (200, "held"))
        self.assertEqual(body["change"]["who"], "api")  # no "who": the API says so
        got = yield self.in_thread(ask_policy, self.port, request("END-OF-MESSAGE"))
        self.assertTrue(got.startswith(b"action=HOLD "), got)
        code, body = yield self.json_call("POST", f"/senders/{KEY}/release", {"reason": "ok"})
        self.assertEqual((code, body["change"]["new"]), (200, "ok"))
        got = yield self.in_thread(ask_policy, self.port, request())
        self.assertEqual(got, b"action=DUNNO\n\n")
        code, body = yield self.json_call("POST", f"/senders/{KEY}/allow", {"reason": "known"})
        self.assertEqual(code, 200)
        yield self.flushed()
        code, detail = yield self.json_call("GET", f"/senders/{KEY}")
        self.assertEqual(detail["pinned"], "allow")
        self.assertEqual([a["who"] for a in detail["audit"]], ["api", "api", "api"])

    @defer.inlineCallbacks
    def test_unknown_sender_is_404(self) -> Any:
        code, body = yield self.json_call("GET", "/senders/sasl:nobody@nowhere")
        self.assertEqual(code, 404)
        self.assertIn("nobody@nowhere", body["error"])

    @defer.inlineCallbacks
    def test_bad_requests_are_refused_with_a_reason_and_change_nothing(self) -> Any:
        cases = [
            ("POST", f"/senders/{KEY}/block", {"who": "x"}, {}, 400, "reason"),
            ("POST", f"/senders/{KEY}/block", {"reason": "  "}, {}, 400, "reason"),
            ("POST", f"/senders/{KEY}/block", {"reason": 5}, {}, 400, "reason"),
            ("POST", f"/senders/{KEY}/block", {"reason": "r", "who": ""}, {}, 400, "who"),
            ("POST", f"/senders/{KEY}/block", ["reason"], {}, 400, "JSON object"),
            ("POST", f"/senders/{KEY}/block", None, {"raw": b"{not json"}, 400, "JSON"),
            ("POST", f"/senders/{KEY}/block", None, {"raw": b"\xff\xfe"}, 400, "JSON"),
            ("POST", f"/senders/{KEY}/block", {"reason": "r"},
             {"content_type": "text/plain"}, 415, "json"),
            ("POST", f"/senders/{KEY}/block", None,
             {"raw": b'{"reason": "' + b"x" * 20000 + b'"}'}, 413, "bytes"),
            ("POST", f"/senders/{KEY}/delete", {"reason": "r"}, {}, 404, "unknown action"),
            ("POST", "/senders/alice/block", {"reason": "r"}, {}, 400, "ip:ADDR"),
            ("GET", f"/senders/{KEY}/block", None, {}, 405, "POST"),
            ("POST", f"/senders/{KEY}", {"reason": "r"}, {}, 405, "GET"),
            ("GET", "/senders?state=angry", None, {}, 400, "state"),
            ("GET", "/senders?limit=many", None, {}, 400, "limit"),
            ("GET", "/senders?limit=0", None, {}, 400, "limit"),
            ("GET", "/nothing/here", None, {}, 404, "no such"),
        ]
        for method, path, body, kw, status, words in cases:
            code, reply = yield self.json_call(method, path, body, **kw)
            self.assertEqual(code, status, (method, path, body, kw))
            self.assertIn(words, reply["error"], (method, path))
        got = yield self.in_thread(ask_policy, self.port, request())
        self.assertEqual(got, b"action=DUNNO\n\n")  # nothing was blocked

    @defer.inlineCallbacks
    def test_list_limit(self) -> Any:
        for i in range(5):
            yield self.json_call("POST", f"/senders/ip:192.0.2.{i}/hold", {"reason": "r"})
        yield self.flushed()
        code, body = yield self.json_call("GET", "/senders?state=held&limit=3")
        self.assertEqual((code, body["count"]), (200, 3))


class MetricsTests(ApiCase):
    @defer.inlineCallbacks
    def test_metrics_count_requests_decisions_and_bad_input(self) -> Any:
        yield self.json_call("POST", f"/senders/{KEY}/block", {"reason": "r"})
        for data in (request(), request(sasl_username=""), request("END-OF-MESSAGE")):
            yield self.in_thread(ask_policy, self.port, data)
        yield self.in_thread(ask_policy_closed, self.port, b"junk\n")
        yield self.in_thread(time.sleep, 0.1)
        code, headers, raw = yield self.call("GET", "/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        text = raw.decode()
        for line in (
            'extrusion_policy_requests_total{state="rcpt"} 2.0',
            'extrusion_policy_requests_total{state="end-of-message"} 1.0',
            'extrusion_policy_decisions_total{action="REJECT"} 2.0',
            'extrusion_policy_decisions_total{action="DUNNO"} 1.0',
            'extrusion_policy_bad_input_total{kind="garbage"} 1.0',
            "extrusion_engine_up 1.0",
            'extrusion_policy_decision_seconds_count 3.0',
            'extrusion_maillog_lines_total{result="read"} 0.0',
            'extrusion_senders{state="held"} 0.0',
        ):
            self.assertIn(line, text)


def ask_policy_closed(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        assert s.recv(100) == b""
