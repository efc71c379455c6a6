"""Log a recurring failure once per burst instead of once per request.

When the store goes away every request fails the same way; one line when it
starts, one summary when it has been quiet again, keeps the log readable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable


class BurstLog:
    """Logs the first failure, counts the rest for `quiet_seconds`, then reports the count."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        clock: Callable[[], float],
        quiet_seconds: float = 60.0,
    ) -> None:
        self._log = log
        self._what = what
        self._clock = clock
        self._quiet = quiet_seconds
        self._since: float | None = None
        self._suppressed = 0

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        if self._since is not None and now - self._since < self._quiet:
            self._suppressed += 1
            return
        if self._suppressed:
            self._log.warning("%s: %d more failures", self._what, self._suppressed)
        self._since = now
        self._suppressed = 0
        self._log.warning("%s failed: %s: %s", self._what, type(exc).__name__, exc)

    def recovered(self) -> None:
        if self._since is None:
            return
        if self._suppressed:
            self._log.warning("%s: %d more failures", self._what, self._suppressed)
        self._log.info("%s works again", self._what)
        self._since = None
        self._suppressed = 0

    @property
    def failing(self) -> bool:
        return self._since is not None
