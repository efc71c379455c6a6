"""The live outcome feed: MTA log lines into the engine as they are written.

[maillog] source = "file" follows the log file with the maillog package's
`CrashSafeFeed`; its `poll()` reads the file, records events on the engine and
saves the checkpoint in the store after the engine's flush (never past a line
whose evidence is only in memory), so it runs in a worker thread, one poll at
a time. source = "syslog" (extrusion/policyd/syslogfeed.py) receives
datagrams on the reactor thread and appends them to a bounded local journal
(extrusion/maillog/journal.py), which the same crash-safe path follows as if
it were the log file: the engine may ask the store about a message, and the
reactor never waits on the store. Lines that arrive while the store cannot
be opened wait in the file (or the journal).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task, threads

from extrusion.config import Config
from extrusion.maillog import logpath
from extrusion.policyd.engineservice import EngineService
from extrusion.policyd.metrics import Metrics
from extrusion.policyd.quiet import QuietWatch

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


class FileFeedService(Service):
    """Follows the log file every `poll_seconds`, in a worker thread."""

    def __init__(self, config: Config, engines: EngineService, reactor: Any, metrics: Metrics,
                 journal: tuple[str, str] | None = None):
        """`journal`: (path, what it journals) to follow instead of `[maillog] path`."""
        self.config = config
        self.engines = engines
        self.reactor = reactor
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
        self.follower: Any = None
        self._last_failure = ""
        self._loop: task.LoopingCall | None = None
        self._loop_done: defer.Deferred[Any] | None = None
        #: Fires after the first poll with an engine: from then on the follower is
        #: positioned and no line written later can be missed.
        self.ready: defer.Deferred[None] = defer.Deferred()

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        log.info("log feed: following %s (%s)", self.path, self.why)
        if not os.path.exists(self.path):
            log.warning("log feed: %s is not there (yet): no delivery outcome is read until "
                        "it appears ([maillog] path)", self.path)
        elif not os.access(self.path, os.R_OK):
            log.warning("log feed: cannot read %s (permission denied): no delivery outcome "
                        "is read; let extrusion's user read it (Debian: group adm)", self.path)
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop_done = self._loop.start(self.config.maillog.poll_seconds, now=True)
        self._loop_done.addErrback(
            lambda f: log.error("log follower stopped: %s", f.getErrorMessage())
        )

    def _tick(self) -> defer.Deferred[Any] | None:
        self.watch.check()
        engine = self.engines.engine
        if engine is None:
            return None  # the lines wait in the file; the checkpoint says where we were
        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self._poll, engine
        ).addErrback(self._failed)
        return d.addBoth(self._first_poll_done)

    def _first_poll_done(self, result: Any) -> Any:
        if not self.ready.called:
            self.ready.callback(None)
        return result

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

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
            yield self._loop_done  # an in-flight poll finishes first
        if self.follower is not None:
            follower = self.follower
            self.follower = None

            def close() -> None:
                follower.close()  # finishes the feed's open joins first

            yield threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), close)


def make_feed_service(
    config: Config, engines: EngineService, reactor: Any, metrics: Metrics
) -> Service | None:
    """The feed service for `config`, or None when there is nothing to follow."""
    source = config.maillog.source
    if source == "none":
        log.warning("[maillog] source = \"none\": no delivery outcomes are read, so "
                    "delivery failures are never counted")
        return None
    try:
        import extrusion.maillog.feed  # noqa: F401 - only asking whether it is built
    except ImportError:
        log.warning("[maillog] source = %r: the log feed is not built yet; no outcomes read",
                    source)
        return None
    if source == "file":
        return FileFeedService(config, engines, reactor, metrics)
    from extrusion.policyd.syslogfeed import SyslogFeedService

    return SyslogFeedService(config, engines, reactor, metrics)
