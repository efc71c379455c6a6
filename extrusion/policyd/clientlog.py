"""Warnings about one client, rate-limited per client address.

A hostile client can open connections as fast as it likes, and each bad one
deserves a warning; one line per connection would let it write the log at
its own pace. Each address gets `per_minute` lines a minute; the rest are
counted and reported in one summary line when its minute is over.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

#: Lines per client address per minute before the rest are only counted.
WARNINGS_PER_MINUTE = 10
WINDOW_SECONDS = 60.0
#: Addresses tracked at once; the oldest window is closed (and summarised) to make room.
MAX_CLIENTS = 1024


class ClientWarnings:
    """`warn(client, fmt, *args)` logs at most `per_minute` lines a minute for each client."""

    def __init__(
        self,
        log: logging.Logger,
        clock: Callable[[], float],
        per_minute: int = WARNINGS_PER_MINUTE,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._log = log
        self._clock = clock
        self.per_minute = per_minute
        self._max_clients = max_clients
        # client -> [window start, lines logged, lines suppressed]; oldest first. An
        # OrderedDict: its first key is found in constant time, where a plain dict's
        # `next(iter(d))` walks the slots its deletions left (a flood of new clients).
        self._windows: OrderedDict[str, list[float]] = OrderedDict()
        self._next_sweep = 0.0

    def warn(self, client: str, fmt: str, *args: Any) -> None:
        now = self._clock()
        self.sweep(now)
        window = self._windows.get(client)
        if window is None or now - window[0] >= WINDOW_SECONDS:
            if window is not None:
                self._close(client, window)
            if len(self._windows) >= self._max_clients:
                oldest = next(iter(self._windows))
                self._close(oldest, self._windows[oldest])
            window = self._windows[client] = [now, 0, 0]
        if window[1] < self.per_minute:
            window[1] += 1
            self._log.warning(fmt, *args)
        else:
            window[2] += 1

    def sweep(self, now: float | None = None) -> None:
        """Close the windows whose minute is over (at most once a minute)."""
        now = self._clock() if now is None else now
        if now < self._next_sweep:
            return
        self._next_sweep = now + WINDOW_SECONDS
        for client, window in list(self._windows.items()):
            if now - window[0] >= WINDOW_SECONDS:
                self._close(client, window)

    def _close(self, client: str, window: list[float]) -> None:
        del self._windows[client]
        if window[2]:
            self._log.warning("policy client %s: %d more warnings in %gs not logged",
                              client, int(window[2]), WINDOW_SECONDS)
