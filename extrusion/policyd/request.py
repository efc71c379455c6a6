"""Bounded, incremental parser for Postfix policy requests.

A request is `name=value` lines ended by an empty line (SMTPD_POLICY_README).
The parser is fed whatever bytes arrive, in any split, and returns the
complete requests. Hostile input raises a `BadInput` subclass whose `kind`
names it for the log line and the metrics; the caller then disconnects
without a reply, which is what the protocol asks of a server in trouble
(Postfix logs it and retries later).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from extrusion.policyd.constants import LINE_END, POLICY_REQUEST

# Attribute names Postfix sends are lower-case words with underscores; we
# accept any printable ASCII without "=" so that future attributes pass, and
# refuse control characters and 8-bit bytes, which only junk contains.
_NAME_RE = re.compile(rb"[!-<>-~]+")
REQUEST_END = b"\n\n"


class BadInput(Exception):
    """Input that is not a policy request; the connection is closed without a reply."""

    kind: ClassVar[str] = "bad_input"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        #: Requests that were complete before the bad input, in order.
        self.completed: list[PolicyRequest] = []


class LineTooLong(BadInput):
    kind = "line_too_long"


class TooManyAttributes(BadInput):
    kind = "too_many_attributes"


class NotAPolicyRequest(BadInput):
    kind = "not_a_policy_request"


class Garbage(BadInput):
    """Binary junk: NUL bytes, a line without `=`, control characters in a name."""

    kind = "garbage"


def _int(value: str) -> int:
    """Numeric attributes: absent, empty or "0" all mean zero (SMTPD_POLICY_README)."""
    try:
        n = int(value)
    except ValueError:
        return 0
    return max(n, 0)


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """One complete request. Unknown attributes are kept but never read."""

    attrs: Mapping[str, str]

    def get(self, name: str) -> str:
        return self.attrs.get(name, "")

    @property
    def protocol_state(self) -> str:
        return self.attrs.get("protocol_state", "").upper()

    @property
    def client_address(self) -> str:
        return self.attrs.get("client_address", "")

    @property
    def client_name(self) -> str:
        name = self.attrs.get("client_name", "")
        return "" if name == "unknown" else name

    @property
    def sasl_username(self) -> str:
        return self.attrs.get("sasl_username", "")

    @property
    def sender(self) -> str:
        return self.attrs.get("sender", "")

    @property
    def recipient(self) -> str:
        return self.attrs.get("recipient", "")

    @property
    def helo_name(self) -> str:
        return self.attrs.get("helo_name", "")

    @property
    def queue_id(self) -> str:
        return self.attrs.get("queue_id", "")

    @property
    def instance(self) -> str:
        return self.attrs.get("instance", "")

    @property
    def recipient_count(self) -> int:
        return _int(self.attrs.get("recipient_count", ""))

    @property
    def size(self) -> int:
        return _int(self.attrs.get("size", ""))


class RequestParser:
    """Turns a byte stream into `PolicyRequest`s, enforcing the configured bounds."""

    __slots__ = ("_attrs", "_buf", "_count", "fast", "max_attributes", "max_line")

    def __init__(self, max_line: int, max_attributes: int, *, fast: bool = True) -> None:
        self.max_line = max_line
        self.max_attributes = max_attributes
        #: Whole requests parsed in one go (`_whole`); False leaves every request to the
        #: line-by-line path, which the tests compare it with.
        self.fast = fast
        self._buf = b""
        self._attrs: dict[str, str] = {}
        self._count = 0

    @property
    def pending(self) -> bool:
        """True while part of a request has arrived but not its empty line."""
        return bool(self._buf) or self._count > 0

    def feed(self, data: bytes) -> list[PolicyRequest]:
        """Consume `data`; return every request it completes. Raises `BadInput`."""
        if b"\0" in data:
            raise Garbage("NUL byte in request")
        if self.fast and not self._buf and not self._count and data.endswith(REQUEST_END):
            # Postfix writes a request and waits for its answer: nearly every chunk is
            # one whole request, parsed here without the loop that finds where it ends.
            fast = self._whole(data, 0)
            if fast is not None and fast[1] == len(data):
                return [fast[0]]
        buf = self._buf + data if self._buf else data
        out: list[PolicyRequest] = []
        try:
            self._buf = self._parse(buf, out)
        except BadInput as exc:
            # Requests completed before the bad line still deserve their answers.
            exc.completed = out
            raise
        return out

    def _parse(self, buf: bytes, out: list[PolicyRequest]) -> bytes:
        start = 0
        while (end := buf.find(LINE_END, start)) >= 0:
            if self._count == 0 and self.fast and (fast := self._whole(buf, start)) is not None:
                request, start = fast
                out.append(request)
                continue
            line = buf[start:end]
            start = end + 1
            if line.endswith(b"\r"):  # tolerate CRLF from hand-written clients
                line = line[:-1]
            if not line:
                out.append(self._finish())
                continue
            if len(line) > self.max_line:
                raise LineTooLong(f"line of {len(line)} bytes (limit {self.max_line})")
            self._count += 1
            if self._count > self.max_attributes:
                raise TooManyAttributes(f"more than {self.max_attributes} attributes")
            name, sep, value = line.partition(b"=")
            if not sep or not _NAME_RE.fullmatch(name):
                raise Garbage(f"not a name=value line: {line[:40]!r}")
            # When an attribute repeats, the README lets us keep either; we keep the last.
            self._attrs[name.decode("ascii")] = value.decode("utf-8", "backslashreplace")
        rest = buf[start:]
        if len(rest) > self.max_line:
            raise LineTooLong(f"line of over {self.max_line} bytes without newline")
        return rest

    def _whole(self, buf: bytes, start: int) -> tuple[PolicyRequest, int] | None:
        """Fast path: a complete, well-formed request at `start` parsed in one go.

        None when there is no complete request there or anything about it is
        unusual (CR, a bad line, a bound reached, bytes that are not UTF-8); the
        line-by-line path then takes it and gives the exact diagnosis, so both
        paths accept the same. Everything here runs in C but one list
        comprehension: no regex walks the values byte by byte."""
        end = buf.find(REQUEST_END, start)
        if end < 0:
            return None
        block = buf[start:end]
        # The bounds without splitting: a block no longer than a line holds no long line.
        if block.count(LINE_END) >= self.max_attributes or (
            len(block) > self.max_line
            and max(map(len, block.split(LINE_END))) > self.max_line
        ):
            return None
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if "\r" in text:
            return None
        try:  # a line without "=" makes a one-item pair: ValueError
            attrs = dict([line.split("=", 1) for line in text.split("\n")])
        except ValueError:
            return None
        # Every name at once: printable ASCII without space ("=" cannot be in one).
        names = "".join(attrs)
        if not (names.isascii() and names.isprintable()) or " " in names or "" in attrs:
            return None
        if attrs.get("request") != POLICY_REQUEST:
            return None
        return PolicyRequest(attrs), end + len(REQUEST_END)

    def _finish(self) -> PolicyRequest:
        attrs, self._attrs, self._count = self._attrs, {}, 0
        kind = attrs.get("request")
        if kind != POLICY_REQUEST:
            what = "no request attribute" if kind is None else f"request={kind[:40]!r}"
            raise NotAPolicyRequest(f"{what} (expected request={POLICY_REQUEST})")
        return PolicyRequest(attrs)
