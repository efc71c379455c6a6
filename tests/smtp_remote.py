"""The "Internet" side of the integration tests: a small threaded SMTP server.

The throw-away Postfix relays everything here. Like a real remote MX it
refuses some recipients and some messages, with the replies that decide
how extrusion judges a sender:

- local part starting with ``unknown``, ``dead`` or ``nouser``: 550 5.1.1 (user unknown)
- domain under ``.invalid`` or starting with ``nxdomain``: 554 5.4.4 (no such domain)
- local part starting with ``greydead``: 450 4.7.1 (greylisted) for the first
  `greylist_seconds` after the address was first tried, then 550 5.1.1: a dead
  address behind a greylisting MX, whose failure Postfix learns only on a retry
- local part starting with ``grey`` (otherwise): 450 4.7.1 (try later; Postfix defers)
- a message whose body carries ``VIRUS_MARKER``, or sent to a ``virusfilter.`` domain:
  554 5.7.0 at end of data (refused as a virus)
- a message whose body carries ``SPAM_MARKER``, or sent to a ``spamfilter.`` domain:
  550 5.7.1 at end of data (refused as spam)

Everything accepted is kept (`messages`) so tests can see what arrived.
Only the standard library is used; the server binds 127.0.0.1 only.
"""

from __future__ import annotations

import re
import socketserver
import threading
import time
from dataclasses import dataclass, field

REPLY_READY = "220 remote.test ESMTP test peer"
REPLY_OK = "250 2.0.0 Ok"
REPLY_DATA = "354 End data with <CR><LF>.<CR><LF>"
REPLY_BYE = "221 2.0.0 Bye"
REPLY_USER_UNKNOWN = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
REPLY_NO_DOMAIN = "554 5.4.4 <{rcpt}>: Host or domain name not found"
REPLY_GREYLIST = "450 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, try later"
REPLY_SPAM = "550 5.7.1 Message rejected as spam"
REPLY_VIRUS = "554 5.7.0 Message rejected: infected with Worm.Test"
REPLY_BAD_SEQUENCE = "503 5.5.1 Error: bad sequence of commands"
REPLY_UNKNOWN_COMMAND = "502 5.5.2 Error: command not recognized"
REPLY_LINE_TOO_LONG = "500 5.5.0 Line too long"

SPAM_MARKER = "XTEST-SPAM-CONTENT"
VIRUS_MARKER = "XTEST-VIRUS-CONTENT"
MAX_LINE = 4096
MAX_MESSAGE = 10 * 1024 * 1024
IDLE_TIMEOUT = 60.0

_USER_UNKNOWN = re.compile(r"^(unknown|dead|nouser)[^@]*@", re.I)
_NO_DOMAIN = re.compile(r"@(nxdomain[^@]*|[^@]*\.invalid)$", re.I)
_GREYLIST = re.compile(r"^grey[^@]*@", re.I)
_GREY_THEN_DEAD = re.compile(r"^greydead[^@]*@", re.I)
GREYLIST_SECONDS = 3.0
_SPAM_DOMAIN = re.compile(r"@spamfilter\.", re.I)
_VIRUS_DOMAIN = re.compile(r"@virusfilter\.", re.I)
_PATH = re.compile(r"^(?:FROM|TO):\s*<([^>]*)>", re.I)


def rcpt_reply(rcpt: str, greylisted: bool = True) -> str:
    """The RCPT TO reply this remote gives for an address (`greylisted`: still in the window)."""
    if _GREY_THEN_DEAD.search(rcpt):
        return (REPLY_GREYLIST if greylisted else REPLY_USER_UNKNOWN).format(rcpt=rcpt)
    if _USER_UNKNOWN.search(rcpt):
        return REPLY_USER_UNKNOWN.format(rcpt=rcpt)
    if _NO_DOMAIN.search(rcpt):
        return REPLY_NO_DOMAIN.format(rcpt=rcpt)
    if _GREYLIST.search(rcpt):
        return REPLY_GREYLIST.format(rcpt=rcpt)
    return REPLY_OK


def data_reply(rcpts: list[str], data: bytes) -> str:
    """The end-of-data reply: content or recipient domain decides spam/virus refusals."""
    if VIRUS_MARKER.encode() in data or any(_VIRUS_DOMAIN.search(r) for r in rcpts):
        return REPLY_VIRUS
    if SPAM_MARKER.encode() in data or any(_SPAM_DOMAIN.search(r) for r in rcpts):
        return REPLY_SPAM
    return "250 2.0.0 Ok: queued"


@dataclass(frozen=True)
class Received:
    """One message the remote accepted."""

    helo: str
    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes
    time: float


@dataclass
class _Session:
    helo: str = ""
    mail_from: str | None = None
    rcpts: list[str] = field(default_factory=list)


class _Handler(socketserver.StreamRequestHandler):
    server: RemoteSMTP
    timeout = IDLE_TIMEOUT

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode("ascii", "replace") + b"\r\n")

    def handle(self) -> None:
        self._say(REPLY_READY)
        s = _Session()
        while True:
            try:
                raw = self.rfile.readline(MAX_LINE + 1)
            except OSError:
                return
            if not raw:
                return
            if len(raw) > MAX_LINE:
                self._say(REPLY_LINE_TOO_LONG)
                return
            line = raw.decode("latin-1").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                s = _Session(helo=arg)
                self._say("250-remote.test")
                self._say("250-PIPELINING")
                self._say("250-8BITMIME")
                self._say("250-ENHANCEDSTATUSCODES")
                self._say(f"250 SIZE {MAX_MESSAGE}")
            elif verb == "HELO":
                s = _Session(helo=arg)
                self._say("250 remote.test")
            elif verb == "MAIL":
                m = _PATH.match(arg)
                if m is None:
                    self._say("501 5.5.4 Syntax: MAIL FROM:<address>")
                    continue
                s.mail_from, s.rcpts = m.group(1), []
                self._say(REPLY_OK)
            elif verb == "RCPT":
                m = _PATH.match(arg)
                if s.mail_from is None or m is None:
                    self._say(REPLY_BAD_SEQUENCE)
                    continue
                reply = rcpt_reply(m.group(1), self.server.greylisted(m.group(1)))
                if reply.startswith("2"):
                    s.rcpts.append(m.group(1))
                self._say(reply)
            elif verb == "DATA":
                if s.mail_from is None or not s.rcpts:
                    self._say("554 5.5.1 Error: no valid recipients")
                    continue
                self._say(REPLY_DATA)
                data = self._read_data()
                if data is None:
                    return
                reply = data_reply(s.rcpts, data)
                if reply.startswith("2"):
                    self.server.record(Received(s.helo, s.mail_from, tuple(s.rcpts), data,
                                                time.time()))
                self._say(reply)
                s = _Session(helo=s.helo)
            elif verb == "RSET":
                s = _Session(helo=s.helo)
                self._say(REPLY_OK)
            elif verb == "NOOP":
                self._say(REPLY_OK)
            elif verb == "QUIT":
                self._say(REPLY_BYE)
                return
            else:
                self._say(REPLY_UNKNOWN_COMMAND)

    def _read_data(self) -> bytes | None:
        """Read the message up to the lone dot; None if the client went away."""
        chunks: list[bytes] = []
        size = 0
        while True:
            raw = self.rfile.readline(MAX_LINE + 1)
            if not raw:
                return None
            if raw in (b".\r\n", b".\n"):
                return b"".join(chunks)
            if raw.startswith(b".."):
                raw = raw[1:]
            size += len(raw)
            if size <= MAX_MESSAGE:
                chunks.append(raw)


class RemoteSMTP(socketserver.ThreadingTCPServer):
    """A remote MX on 127.0.0.1; `start()` runs it in a thread, `close()` stops it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, host: str = "127.0.0.1",
                 greylist_seconds: float = GREYLIST_SECONDS) -> None:
        super().__init__((host, port), _Handler)
        self.port: int = self.server_address[1]
        self.greylist_seconds = greylist_seconds
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._first_seen: dict[str, float] = {}
        self._thread: threading.Thread | None = None

    def greylisted(self, rcpt: str) -> bool:
        """True while `rcpt` is within the greylisting window since it was first tried."""
        now = time.monotonic()
        with self._lock:
            first = self._first_seen.setdefault(rcpt.lower(), now)
        return now - first < self.greylist_seconds

    def record(self, msg: Received) -> None:
        with self._lock:
            self._messages.append(msg)

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    def received_by(self, rcpt: str) -> list[Received]:
        return [m for m in self.messages if rcpt in m.rcpts]

    def start(self) -> RemoteSMTP:
        self._thread = threading.Thread(target=self.serve_forever, name="remote-smtp",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()
