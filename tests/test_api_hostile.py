"""The operator API against hostile clients, over real sockets on loopback.

A body is authenticated and bounded before it is read: a client without the
token, or announcing more than the API accepts, is answered at once. Deep
JSON is a 400, not a traceback. Operator text reaches the log escaped.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

from twisted.internet import defer

from extrusion.policyd.apirequest import MAX_BODY_BYTES, too_deep

from .test_api import KEY, TOKEN, ApiCase

GIGABYTE = 1 << 30


def raw_http(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request head (and part of a body), read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass  # closed with our unread body bytes in its buffer: what we read counts
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


def post_head(length: int | None, token: str | None, path: str = f"/senders/{KEY}/block") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None
                 else "Transfer-Encoding: chunked")
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class HostileApiTests(ApiCase):
    @defer.inlineCallbacks
    def test_an_unauthenticated_gigabyte_is_refused_before_its_body(self) -> Any:
        # Only the head and 64 kB are sent: the answer cannot wait for the rest.
        for token in (None, "wrong"):
            code, data = yield self.in_thread(raw_http, self.api, post_head(GIGABYTE, token),
                                              b"[" * 65536)
            self.assertEqual(code, 401, data)
            self.assertIn(b"WWW-Authenticate: Bearer", data)
            self.assertIn(b"bearer token", data)

    @defer.inlineCallbacks
    def test_an_authenticated_body_over_the_cap_is_413_before_its_body(self) -> Any:
        code, data = yield self.in_thread(raw_http, self.api, post_head(GIGABYTE, TOKEN))
        self.assertEqual(code, 413, data)

    @defer.inlineCallbacks
    def test_a_chunked_body_over_the_cap_is_413(self) -> Any:
        chunk = b"a" * 4096
        body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (MAX_BODY_BYTES // 4096 + 2)
        code, data = yield self.in_thread(raw_http, self.api, post_head(None, TOKEN), body)
        self.assertEqual(code, 413, data)
        code, data = yield self.in_thread(raw_http, self.api, post_head(None, None), body)
        self.assertEqual(code, 401, data)

    @defer.inlineCallbacks
    def test_deeply_nested_json_is_400_not_500(self) -> Any:
        for raw in (b"[" * 8000, b'{"reason": ' + b"[" * 8000 + b"]" * 8000 + b"}"):
            code, body = yield self.json_call("POST", f"/senders/{KEY}/block", raw=raw)
            self.assertEqual(code, 400)
            self.assertIn("nests too deeply", body["error"])

    @defer.inlineCallbacks
    def test_a_good_body_is_still_read_and_applied(self) -> Any:
        code, body = yield self.json_call("POST", f"/senders/{KEY}/hold",
                                          {"reason": "brackets [in] {text}", "who": "noc"})
        self.assertEqual(code, 200, body)
        self.assertEqual(body["action"], "hold")

    @defer.inlineCallbacks
    def test_who_and_reason_are_logged_escaped(self) -> Any:
        collect = Collect()
        logger = logging.getLogger("extrusion.policyd.api")
        logger.addHandler(collect)
        self.addCleanup(logger.removeHandler, collect)
        self.addCleanup(logger.setLevel, logger.level)
        logger.setLevel(logging.INFO)
        code, _ = yield self.json_call(
            "POST", f"/senders/{KEY}/block",
            {"reason": "spam\nFAKE api release by root\x1b[2J", "who": "eve\r\x1b]0;x\x07"})
        self.assertEqual(code, 200)
        [line] = [x for x in collect.lines if x.startswith("api block")]
        self.assertNotIn("\n", line)
        self.assertNotIn("\x1b", line)
        self.assertNotIn("\r", line)
        self.assertIn("spam\\x0aFAKE", line)
        self.assertIn("\\x1b", line)


def test_depth_check_skips_brackets_inside_strings() -> None:
    assert not too_deep(json.dumps({"reason": "[" * 100}).encode())
    assert not too_deep(b'{"a": "\\"[[[[[[[[[[[["}')
    assert too_deep(b"[" * 9)
    assert not too_deep(b"[" * 8 + b"]" * 8)
