"""Receive syslog datagrams (RFC 3164 and RFC 5424) and hand them to the log feed.

    port = listen_syslog(reactor, "udp:5514:interface=127.0.0.1", SyslogProtocol(feed))

The endpoint is `udp:PORT[:interface=ADDR]` or `unix:/path` (a datagram
socket, as rsyslog's omuxsock or Postfix's own postlogd would write to).
Each datagram is one message; its timestamp, host and tag are taken from the
header (RFC 3164's classic stamp gets its year like a log file's; no stamp
means "now"; no host means the sender's address). A datagram that is not
syslog at all is offered to the feed as a plain log line, where it is
counted as garbled unless it happens to be one. Both sockets are datagram
sockets, so no message is longer than `MAX_DATAGRAM`. A datagram that fails
anyway (a bug) is counted in `failed` and logged as one warning line, the
first few and then one in `FAILURES_LOG_EVERY`: never a traceback per datagram.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.protocol import DatagramProtocol

from extrusion.maillog.timestamps import SyslogClock, parse_rfc3339
from extrusion.scoring.helo import safe_text

log = logging.getLogger(__name__)

# Larger than any syslog datagram (RFC 5426 allows up to the UDP maximum).
MAX_DATAGRAM = 65535
MAX_PRI = 191  # facility 23, severity 7
FAILURES_LOGGED = 5
FAILURES_LOG_EVERY = 1000
FAILURE_TEXT_CHARS = 200
NIL = "-"
_BOM = "\ufeff"

_PRI = re.compile(r"<(\d{1,3})>")
_CLASSIC = re.compile(r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d(?:\.\d{1,9})?) ")
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?) ")
_TAG = re.compile(r"([^\s\[:]+)(?:\[(\w+)\])?: ?(.*)", re.DOTALL)
_RFC5424 = re.compile(r"[1-9]\d{0,2} (\S+) (\S+) (\S+) (\S+) (\S+) ", re.DOTALL)


class Feed(Protocol):
    def entry(self, t: float, host: str, program: str, pid: str, message: str) -> None: ...

    def line(self, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    time: float
    host: str
    program: str
    pid: str
    message: str
    facility: int
    severity: int


class SyslogParser:
    """Datagram text to `SyslogMessage`; keeps the year of RFC 3164 stamps in step."""

    def __init__(self, clock: Callable[[], float] = time.time, tz: dt.tzinfo | None = None):
        self.clock = clock
        self.tz = tz
        self._syslog_clock = SyslogClock(clock(), tz)

    def parse(self, text: str, peer: str = "") -> SyslogMessage | None:
        text = text.rstrip("\r\n\x00")
        m = _PRI.match(text)
        if m is None or int(m.group(1)) > MAX_PRI:
            return None
        pri = int(m.group(1))
        rest = text[m.end() :]
        try:
            if rest[:1].isdigit() and (v := _RFC5424.match(rest)) is not None and (
                v.group(1) == NIL or "T" in v.group(1)
            ):
                return self._rfc5424(pri, v, rest[v.end() :], peer)
            return self._rfc3164(pri, rest, peer)
        except (ValueError, OverflowError):  # a stamp with impossible fields
            return None

    def _rfc5424(self, pri: int, v: re.Match[str], rest: str, peer: str) -> SyslogMessage:
        stamp, host, app, procid, _msgid = v.groups()
        t = self.clock() if stamp == NIL else parse_rfc3339(stamp, self.tz)
        message = _skip_structured_data(rest)
        if message.startswith(_BOM):
            message = message[1:]
        return SyslogMessage(
            t, peer if host == NIL else host, "" if app == NIL else app,
            "" if procid == NIL else procid, message, pri >> 3, pri & 7,
        )

    def _rfc3164(self, pri: int, rest: str, peer: str) -> SyslogMessage:
        if c := _CLASSIC.match(rest):
            t = self._syslog_clock.classic(*c.groups())
            rest = rest[c.end() :]
        elif i := _ISO.match(rest):
            t = parse_rfc3339(i.group(1), self.tz)
            rest = rest[i.end() :]
        else:
            t = self.clock()
        host = peer
        first, _, after = rest.partition(" ")
        # Local senders (a unix socket) leave the host out: the first word is the tag.
        if after and not first.endswith(":") and "[" not in first:
            host, rest = first, after
        tag = _TAG.match(rest)
        if tag is None:
            return SyslogMessage(t, host, "", "", rest, pri >> 3, pri & 7)
        return SyslogMessage(t, host, tag.group(1), tag.group(2) or "", tag.group(3),
                             pri >> 3, pri & 7)


def _skip_structured_data(rest: str) -> str:
    """The MSG after RFC 5424 STRUCTURED-DATA (`-` or `[id k="v"]…`, `\\]` escaped)."""
    if rest.startswith(NIL):
        return rest[2:] if rest.startswith("- ") else rest[1:]
    i, n = 0, len(rest)
    while i < n and rest[i] == "[":
        i += 1
        quoted = False
        while i < n:
            ch = rest[i]
            if ch == "\\" and quoted:
                i += 2
                continue
            if ch == '"':
                quoted = not quoted
            elif ch == "]" and not quoted:
                break
            i += 1
        i += 1
    return rest[i + 1 :] if i < n and rest[i] == " " else rest[i:]


class SyslogProtocol(DatagramProtocol):
    """Twisted datagram protocol: every datagram goes to the feed."""

    def __init__(self, feed: Feed, clock: Callable[[], float] = time.time,
                 tz: dt.tzinfo | None = None) -> None:
        self.feed = feed
        self.parser = SyslogParser(clock, tz)
        self.datagrams = 0
        self.not_syslog = 0
        self.failed = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # Twisted's name
        self.datagrams += 1
        try:
            self._receive(datagram, addr)
        except Exception as exc:
            # Twisted would log a CRITICAL traceback per datagram: one line, rate-limited.
            self.failed += 1
            if self.failed <= FAILURES_LOGGED or not self.failed % FAILURES_LOG_EVERY:
                log.warning("syslog datagram skipped (%s: %s; %d so far): %s",
                            type(exc).__name__, safe_text(str(exc), FAILURE_TEXT_CHARS),
                            self.failed, safe_text(datagram, FAILURE_TEXT_CHARS))

    def _receive(self, datagram: bytes, addr: Any) -> None:
        text = datagram.decode("utf-8", "replace")
        peer = addr[0] if isinstance(addr, tuple) and addr else ""
        msg = self.parser.parse(text, peer)
        if msg is None:
            self.not_syslog += 1
            self.feed.line(text)
            return
        self.feed.entry(msg.time, msg.host, msg.program, msg.pid, msg.message)


class EndpointError(ValueError):
    """A syslog endpoint string that cannot be listened on."""


def listen_syslog(reactor: Any, endpoint: str, protocol: DatagramProtocol) -> Any:
    """Listen for datagrams on `udp:PORT[:interface=ADDR]` or `unix:/path`; the port object."""
    if endpoint.startswith("udp:"):
        parts = endpoint.split(":", 2)
        if not parts[1].isdigit():
            raise EndpointError(f"{endpoint!r}: bad port")
        interface = ""
        if len(parts) == 3:
            key, _, value = parts[2].partition("=")
            if key != "interface" or not value:
                raise EndpointError(f"{endpoint!r}: expected udp:PORT:interface=ADDR")
            interface = value
        return reactor.listenUDP(int(parts[1]), protocol, interface=interface,
                                 maxPacketSize=MAX_DATAGRAM)
    if endpoint.startswith("unix:") and len(endpoint) > len("unix:"):
        path = endpoint[len("unix:") :]
        _remove_stale_socket(path)
        return reactor.listenUNIXDatagram(path, protocol, maxPacketSize=MAX_DATAGRAM)
    raise EndpointError(f"{endpoint!r}: expected udp:PORT:interface=ADDR or unix:/path")


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a previous run is ours to replace; any other file is not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise EndpointError(f"{path} exists and is not a socket")
    os.unlink(path)
