"""The operator API's request: refused before its body is read when it would be refused anyway.

twisted.web reads a whole request body (to a temporary file when it is
large) before a resource sees the request, so a 401 or a 413 decided there
comes after the client has sent, and we have stored, every byte. This
request decides as soon as the headers are complete: a body from a client
without the token, or longer than the API ever accepts, is answered at once
and the connection closed, without reading the body. What is accepted is
kept in memory, never more than `MAX_BODY_BYTES`.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.web import http, server

#: An operator action's JSON body is a reason and a name; anything bigger is a mistake.
MAX_BODY_BYTES = 16 * 1024
#: The body is one flat object; nesting deeper than this is refused before parsing.
MAX_JSON_DEPTH = 8

UNAUTHORIZED = 401
PAYLOAD_TOO_LARGE = 413


class _Discard:
    """Where the body of a refused request goes: nowhere."""

    def write(self, data: bytes) -> None:
        pass

    def seek(self, *args: Any) -> None:
        pass

    def read(self, *args: Any) -> bytes:
        return b""

    def close(self) -> None:
        pass


class GuardedRequest(server.Request):
    """A `server.Request` whose body is authenticated and bounded before it is read."""

    refused = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        # Called by the channel once the headers are complete, before any body byte.
        if length == 0:  # no body: routed and authenticated in the resource as usual
            self.content = io.BytesIO()
            return
        channel: Any = self.channel  # twisted.web is unannotated here
        api = getattr(channel.site, "resource", None)
        authorised = getattr(api, "authorised", None)
        if authorised is not None and not authorised(self):
            self._refuse(UNAUTHORIZED, "missing or wrong bearer token")
        elif length is not None and length > MAX_BODY_BYTES:
            self._refuse(PAYLOAD_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
        else:
            self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self._received += len(data)
        if self._received > MAX_BODY_BYTES:  # a chunked body has no length up front
            self._refuse(PAYLOAD_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
            return
        content: Any = self.content
        content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.refused:
            super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]

    def _refuse(self, code: int, message: str) -> None:
        """Answer now and hang up: the client is not to send the rest."""
        self.refused = True
        self.content = _Discard()
        body = json.dumps({"error": message}).encode() + b"\n"
        head = [
            b"HTTP/1.1 %d %s" % (code, http.RESPONSES[code]),
            b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
            b"Connection: close",
        ]
        if code == UNAUTHORIZED:
            head.append(b'WWW-Authenticate: Bearer realm="extrusion"')
        transport: Any = self.channel.transport
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        transport.loseConnection()


def too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays or objects deeper than `limit` (strings skipped).

    Checked before `json.loads`, whose recursion would otherwise end in a
    RecursionError (a 500) for a few kilobytes of `[`."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False
