"""A raw milter-protocol client (protocol version 6) that can send what no MTA would.

miltertest builds only well-formed frames; the hostile tests need malformed
ones too (a macro frame with a name and no value, frames in the wrong order,
empty frames). A frame is a 4-byte big-endian length, a 1-byte command and
its payload; a reply has the same form. Every read is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass

VERSION = 6
ALL_ACTIONS = 0x1FF
ALL_PROTOCOL = 0x1FFFFF  # every step and every "no reply" flag the MTA offers
# Protocol flags the milter may set to say it sends no reply to a step.
NR_CONN = 0x1000
NR_HELO = 0x2000
NR_MAIL = 0x4000
NR_RCPT = 0x8000
NR_HDR = 0x80
NR_EOH = 0x40000
NR_BODY = 0x80000
MAX_REPLY = 1 << 16  # a milter's reply is a few hundred bytes; refuse anything near this

OPTNEG, MACRO, CONNECT, HELO, MAIL, RCPT = b"O", b"D", b"C", b"H", b"M", b"R"
DATA, HEADER, EOH, BODY, EOM, ABORT, QUIT = b"T", b"L", b"N", b"B", b"E", b"A", b"Q"
CONTINUE, ACCEPT, REJECT, TEMPFAIL = b"c", b"a", b"r", b"t"


class Closed(Exception):
    """The milter closed the connection (or died) before answering."""


def frame(command: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload) + 1) + command + payload


def strings(*values: bytes) -> bytes:
    """NUL-terminated strings, as in macro, MAIL and RCPT frames."""
    return b"".join(v + b"\0" for v in values)


@dataclass
class Session:
    """One milter connection, negotiated."""

    sock: socket.socket
    protocol: int = 0

    @classmethod
    def open(cls, address: str | tuple[str, int], timeout: float = 5.0) -> Session:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            session = cls(sock)
            session.send(OPTNEG, struct.pack(">III", VERSION, ALL_ACTIONS, ALL_PROTOCOL))
            command, payload = session.reply()
        except BaseException:
            sock.close()
            raise
        if command != OPTNEG or len(payload) < 12:
            sock.close()
            raise Closed(f"bad negotiation reply {command!r}")
        session.protocol = struct.unpack(">III", payload[:12])[2]
        return session

    def send(self, command: bytes, payload: bytes = b"") -> None:
        self.sock.sendall(frame(command, payload))

    def reply(self) -> tuple[bytes, bytes]:
        length = struct.unpack(">I", self._read(4))[0]
        if not 0 < length <= MAX_REPLY:
            raise Closed(f"reply length {length}")
        body = self._read(length)
        return body[:1], body[1:]

    def step(self, command: bytes, payload: bytes, no_reply: int = 0) -> bytes | None:
        """Send one frame; its reply code, or None when the milter said it sends none."""
        self.send(command, payload)
        if no_reply and self.protocol & no_reply:
            return None
        while True:
            code, _ = self.reply()
            if code not in (b"h", b"i", b"m", b"q", b"+", b"-"):  # modifications come first
                return code

    def connect(self, host: bytes = b"client.example", addr: bytes = b"192.0.2.1") -> bytes | None:
        payload = host + b"\0" + b"4" + struct.pack(">H", 25) + addr + b"\0"
        return self.step(CONNECT, payload, NR_CONN)

    def helo(self, name: bytes) -> bytes | None:
        return self.step(HELO, name + b"\0", NR_HELO)

    def macro(self, stage: bytes, *values: bytes) -> None:
        self.send(MACRO, stage + strings(*values))  # macros are never answered

    def mail(self, *args: bytes) -> bytes | None:
        return self.step(MAIL, strings(*args), NR_MAIL)

    def rcpt(self, *args: bytes) -> bytes | None:
        return self.step(RCPT, strings(*args), NR_RCPT)

    def header(self, name: bytes, value: bytes) -> bytes | None:
        return self.step(HEADER, name + b"\0" + value + b"\0", NR_HDR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(QUIT)
        self.sock.close()

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise Closed("connection closed")
            data += chunk
        return data
