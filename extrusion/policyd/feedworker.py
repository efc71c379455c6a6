"""One thread between the syslog receiver and the engine: a bounded queue, kept in order.

The engine may go to the store while it records a line's events (an outcome
for a message another process recorded), and a store that hangs would hang
the caller. The reactor thread therefore only queues; this worker makes the
calls, one at a time and in arrival order, so the joiner sees lines in the
order the MTA logged them. A full queue drops the newest line and counts it:
memory stays bounded while the store is away.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("extrusion.policyd.feed")

#: Lines kept while the engine is not open or is busy with the store; more are dropped.
MAX_WAITING_LINES = 100_000
#: How often a worker waiting for the engine to open looks again (seconds).
ENGINE_POLL_SECONDS = 0.2

Item = tuple[str, tuple[Any, ...]]
_STOP: Item = ("stop", ())


class FeedWorker:
    """`put()` from the reactor; `stop()` from any other thread gives what is queued first."""

    def __init__(
        self,
        engine: Callable[[], Any],
        new_feed: Callable[[Any], Any],
        dropped: Callable[[], None],
        maxsize: int = MAX_WAITING_LINES,
    ) -> None:
        self._engine = engine
        self._new_feed = new_feed
        self._dropped = dropped
        self._queue: queue.Queue[Item] = queue.Queue(maxsize)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="extrusion-syslog-feed",
                                        daemon=True)
        self._feed: Any = None

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Item) -> None:
        """Queue one call for the feed; never blocks (a full queue drops it, counted)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped()

    def stop(self) -> None:
        """Give everything queued to the engine, finish the feed's open joins, end the thread.

        Blocks: call it from a worker thread, never the reactor's."""
        if self._thread.ident is None:
            return
        self._stopping.set()
        self._queue.put(_STOP)  # after every line already queued
        self._thread.join()

    def _run(self) -> None:
        while True:
            kind, args = self._queue.get()
            if kind == _STOP[0]:
                break
            feed = self._ready_feed()
            if feed is None:
                break  # stopping before the engine ever opened: nothing can take the lines
            try:
                getattr(feed, kind)(*args)
            except Exception:  # one bad line must not end the feed for every other
                log.exception("syslog feed: a line could not be handled")
        if self._feed is not None:
            try:
                self._feed.finish()
            except Exception:
                log.exception("syslog feed: finishing the open messages failed")

    def _ready_feed(self) -> Any:
        while self._feed is None:
            engine = self._engine()
            if engine is not None:
                self._feed = self._new_feed(engine)
            elif self._stopping.wait(ENGINE_POLL_SECONDS):
                return None
        return self._feed
