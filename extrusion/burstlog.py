"""Log a recurring failure once per burst instead of once per request.

When the store or the engine goes away every request fails the same way: one
line when the failures start, a reminder with the count while they go on, one
line when it works again, keep the log readable. Used by the policy daemon
(on the reactor) and the milter (on libmilter's threads), hence the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

# A burst that goes on is re-announced this often, with its count.
REPEAT_SECONDS = 60.0


class BurstLog:
    """Logs the first failure of `what`, a reminder every `repeat_seconds` while failures
    go on, and how many there were once it works again."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        clock: Callable[[], float] = time.monotonic,
        *,
        repeat_seconds: float = REPEAT_SECONDS,
        level: int = logging.WARNING,
        note: str = "",
    ) -> None:
        self._log = log
        self._what = what
        self._clock = clock
        self._repeat = repeat_seconds
        self._level = level
        self._note = note  # said with the first failure: what happens meanwhile
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last_said = 0.0
        self._count = 0

    def failed(self, reason: str) -> None:
        with self._lock:
            now = self._clock()
            self._count += 1
            if self._since is None:
                self._since = self._last_said = now
                self._log.log(self._level, "%s failed: %s%s", self._what, reason, self._note)
            elif now - self._last_said >= self._repeat:
                self._last_said = now
                self._log.log(self._level, "%s still failing (%s): %d failures in %.0fs",
                              self._what, reason, self._count, now - self._since)

    def recovered(self) -> None:
        if self._since is None:  # the common case, read without taking the lock
            return
        with self._lock:
            if self._since is None:
                return
            self._log.log(self._level, "%s works again after %d failures in %.1fs",
                          self._what, self._count, self._clock() - self._since)
            self._since = None
            self._count = 0

    @property
    def failing(self) -> bool:
        return self._since is not None


def exception_text(exc: BaseException) -> str:
    """`TypeName: message`, the reason a caught exception gives."""
    return f"{type(exc).__name__}: {exc}"
