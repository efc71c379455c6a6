"""From libmilter's callbacks to the session's `ExtrusionMilter`, whatever order they come in.

Two things pymilter does not handle on its own, both reachable by anyone who
can talk to the milter socket:

- Callbacks without a session object: a peer that skips negotiation and
  CONNECT (or sends HELO, MAIL or a header first) reaches callbacks for which
  pymilter has created no object; `ctx.getpriv()` is None and pymilter
  printed an AttributeError traceback. Here the object is made on the spot
  (its client address taken from the `{client_addr}` macro) and one line said.
- Values pymilter's C layer cannot decode: the CONNECT host name, the HELO
  name and header names are decoded as strict UTF-8 before any Python code
  runs, so a non-UTF-8 one never reaches a callback and pymilter printed a
  bare "UnicodeDecodeError: ..." line. pymilter hands that exception to
  `sys.excepthook`, on the session's own Python thread state (pymilter keeps
  one per SMTP session, so a `threading.local` is per session). The hook here
  finds the session, logs one line with its client address and the
  callback, and passes the raw bytes on (escaped) so nothing is lost.

Lines about hostile sessions are rate-limited (`RateLimitedLog`).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from extrusion.milter.adapter import CONTINUE, ExtrusionMilter
from extrusion.milter.text import clean

log = logging.getLogger("extrusion.milter")

# At most this many lines about hostile sessions per window; the rest are counted.
HOSTILE_LINES_PER_WINDOW = 20
HOSTILE_WINDOW_SECONDS = 60.0
# How much of an undecodable value a log line shows.
LOGGED_VALUE_CHARS = 80

Factory = Callable[[], ExtrusionMilter]
ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


class RateLimitedLog:
    """Up to `limit` warnings per `window` seconds, then one line with how many were dropped."""

    def __init__(self, limit: int = HOSTILE_LINES_PER_WINDOW,
                 window: float = HOSTILE_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit, self._window, self._clock = limit, window, clock
        self._lock = threading.Lock()
        self._start = clock()
        self._said = 0
        self.suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        with self._lock:
            now = self._clock()
            if now - self._start >= self._window:
                if self.suppressed:
                    log.warning("%d more lines about hostile milter sessions suppressed "
                                "in %.0fs", self.suppressed, now - self._start)
                self._start, self._said, self.suppressed = now, 0, 0
            if self._said >= self._limit:
                self.suppressed += 1
                return
            self._said += 1
        log.warning(msg, *args)


class Dispatcher:
    """The callbacks registered with pymilter's C module, and its exception hook."""

    def __init__(self, factory: Factory, complaints: RateLimitedLog | None = None) -> None:
        self._factory = factory
        self.complaints = complaints or RateLimitedLog()
        self._current = threading.local()  # per pymilter context, i.e. per SMTP session
        self._previous_hook: ExceptHook = sys.excepthook

    # --- what libmilter calls ------------------------------------------------------------

    def negotiate(self, ctx: Any, opts: list[int]) -> int:
        rc: int = self._new(ctx).negotiate(opts)
        return rc

    def connect(self, ctx: Any, hostname: str, family: int, hostaddr: Any) -> int:
        m = ctx.getpriv()
        if m is None:  # an MTA that does not negotiate (milter protocol 1)
            m = self._new(ctx)
        self._current.milter = m
        rc: int = m.connect(hostname, family, hostaddr)
        return rc

    def session(self, ctx: Any, callback: str) -> ExtrusionMilter:
        """The session's object; made now if the peer skipped negotiation and CONNECT."""
        m: ExtrusionMilter | None = ctx.getpriv()
        if m is None:
            m = self._new(ctx)
            m.connect("", socket.AF_UNSPEC, None)  # the address from {client_addr}, if sent
            self.complaints.warning(
                "milter session client=%s callback=%s: no CONNECT before it (the peer is "
                "not a well-behaved MTA); judged without the connection's details",
                m.session.client_addr or "unknown", callback)
        self._current.milter = m
        return m

    def close(self, ctx: Any) -> int:
        m = ctx.getpriv()
        self._current.milter = None
        if m is None:
            return CONTINUE
        try:
            rc: int = m.close()
        finally:
            m._setctx(None)  # as pymilter's close_callback: release the context
        return rc

    # --- what pymilter's C layer could not hand over -------------------------------------

    def install_hook(self) -> None:
        if sys.excepthook is not self.excepthook:
            self._previous_hook = sys.excepthook
            sys.excepthook = self.excepthook

    def excepthook(self, kind: type[BaseException], exc: BaseException,
                   tb: TracebackType | None) -> Any:
        m: ExtrusionMilter | None = getattr(self._current, "milter", None)
        # No traceback: raised in pymilter's C layer, not in Python code.
        if tb is None and isinstance(exc, UnicodeDecodeError):
            if m is None:  # a CONNECT host name, from a peer that did not negotiate
                self.complaints.warning(
                    "milter session client=unknown callback=connect: value is not UTF-8 "
                    "(%s); session judged without it", clean(exc.object, LOGGED_VALUE_CHARS))
                return None
            try:
                self._undecodable(m, bytes(exc.object))
            except Exception:
                log.exception("milter: handling an undecodable value failed")
            return None
        return self._previous_hook(kind, exc, tb)

    def _undecodable(self, m: ExtrusionMilter, raw: bytes) -> None:
        """Give the callback pymilter could not call its value, escaped, and say so once."""
        s = m.session
        if not s.seen_connect:
            callback = "connect"
            m.connect(raw, socket.AF_UNSPEC, None)  # the address from {client_addr}
        elif s.message is None:
            callback = "helo"
            m.hello(raw)
        else:
            callback = "header"  # a header name: none we read is anything but ASCII
        self.complaints.warning(
            "milter session client=%s callback=%s: value is not UTF-8 (%s); recorded escaped",
            s.client_addr or "unknown", callback, clean(raw, LOGGED_VALUE_CHARS))

    def _new(self, ctx: Any) -> ExtrusionMilter:
        m = self._factory()
        m._setctx(ctx)
        self._current.milter = m
        return m
