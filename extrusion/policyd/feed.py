"""The live outcome feed: MTA log lines into the engine as they are written.

[maillog] source = "file" follows the log file with the maillog package's
`CrashSafeFeed`; its `poll()` reads the file, records events on the engine and
saves the checkpoint in the store after the engine's flush (never past a line
whose evidence is only in memory), so it runs in a worker thread, one poll at
a time. source = "syslog" receives datagrams on
the reactor thread and queues them for one worker thread that parses them
and calls the engine, in order: the engine may ask the store about a
message, and the reactor never waits on the store. Lines that arrive while
the store cannot be opened wait in a bounded queue (syslog) or in the file
itself (file).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from extrusion.config import Config
from extrusion.maillog import logpath
from extrusion.policyd.engineservice import EngineService
from extrusion.policyd.metrics import Metrics
from extrusion.policyd.quiet import QuietWatch
from extrusion.poller import EnginePoller

log = logging.getLogger("extrusion.policyd.feed")

class _FeedCounters:
    """Moves the LogFeed's running totals into the Prometheus counters."""

    def __init__(self, metrics: Metrics, watch: QuietWatch) -> None:
        self.metrics = metrics
        self.watch = watch
        self.seen = {"read": 0, "parsed": 0, "ignored": 0, "garbled": 0}

    def update(self, feed: Any) -> None:
        stats = feed.stats
        self.watch.seen(stats.outcomes)
        now = {"read": stats.lines, "parsed": stats.parsed, "ignored": stats.ignored,
               "garbled": stats.garbled}
        for name, value in now.items():
            if value > self.seen[name]:
                self.metrics.log_lines.labels(name).inc(value - self.seen[name])
            self.seen[name] = value


class FileFeedService(EnginePoller):
    """Follows the log file every `poll_seconds`, in a worker thread."""

    def __init__(self, config: Config, engines: EngineService, reactor: Any, metrics: Metrics,
                 journal: tuple[str, str] | None = None):
        """`journal`: (path, what it journals) to follow instead of `[maillog] path`."""
        super().__init__(engines, reactor, config.maillog.poll_seconds, log, "log follower")
        self.config = config
        if journal is None:
            self.path, why = logpath.resolve(config.maillog.path,
                                             config.policyd.postfix_config_dir)
        else:
            self.path, why = journal
        self.why = why
        self.watch = QuietWatch(reactor.seconds, config.maillog.quiet_warning_seconds,
                                "syslog" if journal else "file", why if journal else self.path)
        self.counters = _FeedCounters(metrics, self.watch)
        self.metrics = metrics
        self.feed: Any = None
        self._last_failure = ""

    def startService(self) -> None:
        log.info("log feed: following %s (%s)", self.path, self.why)
        if not os.path.exists(self.path):
            log.warning("log feed: %s is not there (yet): no delivery outcome is read until "
                        "it appears ([maillog] path)", self.path)
        elif not os.access(self.path, os.R_OK):
            log.warning("log feed: cannot read %s (permission denied): no delivery outcome "
                        "is read; let extrusion's user read it (Debian: group adm)", self.path)
        super().startService()

    def _before_tick(self) -> None:
        self.watch.check()

    def _poll(self, engine: Any) -> int:
        """Worker thread: read what was appended, feed it, checkpoint after a flush."""
        if self.follower is None:
            from extrusion.maillog.recovery import CrashSafeFeed

            # Spooled batches first: lines read again after a crash are looked up in the
            # store, which must hold everything recorded before. Until it answers, the
            # lines wait in the file.
            engine.flush()
            store = engine.store
            store.ping()
            safe = self._crash_safe_feed(CrashSafeFeed, engine, store)
            self.feed, self.follower = safe.feed, safe
            log.info("following %s", self.path)
        n: int = self.follower.poll()
        self.counters.update(self.feed)
        self._last_failure = ""
        return n

    def _crash_safe_feed(self, make: Any, engine: Any, store: Any) -> Any:
        """Worker thread: the follower of the file (a journal's service decodes its lines)."""
        return make(engine, self.config, store, path=self.path)

    def _failed(self, failure: Any) -> None:
        # An unreadable file or a store hiccup: log it, keep polling (the follower resumes).
        # The same failure every poll (a file we may not read) is logged once, not per poll.
        message = failure.getErrorMessage()
        if message != self._last_failure:
            self._last_failure = message
            log.warning("log follower: %s", message)
