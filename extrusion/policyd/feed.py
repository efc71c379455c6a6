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

from twisted.application.service import Service
from twisted.internet import defer, task, threads

from extrusion.config import Config
from extrusion.maillog import logpath
from extrusion.policyd.engineservice import EngineService
from extrusion.policyd.feedworker import FeedWorker
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

    def __init__(self, config: Config, engines: EngineService, reactor: Any, metrics: Metrics):
        super().__init__(engines, reactor, config.maillog.poll_seconds, log, "log follower")
        self.config = config
        self.path, why = logpath.resolve(config.maillog.path, config.policyd.postfix_config_dir)
        self.why = why
        self.watch = QuietWatch(reactor.seconds, config.maillog.quiet_warning_seconds,
                                "file", self.path)
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
            safe = CrashSafeFeed(engine, self.config, store, path=self.path)
            self.feed, self.follower = safe.feed, safe
            log.info("following %s", self.path)
        n: int = self.follower.poll()
        self.counters.update(self.feed)
        self._last_failure = ""
        return n

    def _failed(self, failure: Any) -> None:
        # An unreadable file or a store hiccup: log it, keep polling (the follower resumes).
        # The same failure every poll (a file we may not read) is logged once, not per poll.
        message = failure.getErrorMessage()
        if message != self._last_failure:
            self._last_failure = message
            log.warning("log follower: %s", message)


class SyslogFeedService(Service):
    """Receives syslog datagrams on the reactor; one worker thread feeds them to the engine.

    An outcome whose message this process did not record sends the engine to
    the store for it, and a hung store would hang that call: the reactor only
    queues each datagram (bounded, in order) and the worker, alone, parses
    lines and calls the engine, so policy answers never wait on the database.
    """

    def __init__(self, config: Config, engines: EngineService, reactor: Any, metrics: Metrics):
        self.config = config
        self.engines = engines
        self.reactor = reactor
        self.watch = QuietWatch(reactor.seconds, config.maillog.quiet_warning_seconds,
                                "syslog", config.maillog.syslog_listen)
        self.counters = _FeedCounters(metrics, self.watch)
        self.metrics = metrics
        self.feed: Any = None
        self.port: Any = None
        self.ready: defer.Deferred[None] = defer.succeed(None)  # listening once started
        self.worker = FeedWorker(self._engine, self._new_feed, self._dropped)
        self._loop: task.LoopingCall | None = None

    # The syslog protocol calls these two, as it would call a LogFeed (reactor thread).
    def line(self, text: str) -> None:
        self.worker.put(("line", (text,)))

    def entry(self, t: float, host: str, program: str, pid: str, message: str) -> None:
        self.worker.put(("entry", (t, host, program, pid, message)))

    @property
    def waiting(self) -> int:
        """Lines received and not yet given to the engine."""
        return self.worker.waiting

    def _engine(self) -> Any:
        return self.engines.engine

    def _new_feed(self, engine: Any) -> Any:
        """Worker thread: the LogFeed, made once the engine is open."""
        from extrusion.maillog.feed import LogFeed

        self.feed = LogFeed.from_config(engine, self.config, live=True)
        return self.feed

    def _dropped(self) -> None:
        self.metrics.log_lines.labels("dropped").inc()

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        from extrusion.maillog.syslog import SyslogProtocol, listen_syslog
        from extrusion.maillog.timestamps import log_zone

        proto = SyslogProtocol(self, self.reactor.seconds, log_zone(self.config.maillog.timezone))
        self.port = listen_syslog(self.reactor, self.config.maillog.syslog_listen, proto)
        log.info("receiving syslog on %s", self.config.maillog.syslog_listen)
        self.worker.start()
        # The line counters, every second.
        self._loop = task.LoopingCall(self._housekeeping)
        self._loop.clock = self.reactor
        self._loop.start(1.0, now=False)

    def _housekeeping(self) -> None:
        if (feed := self.feed) is not None:
            self.counters.update(feed)  # plain ints, read across threads
        self.watch.check()

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        port, self.port = self.port, None
        if port is not None:
            yield defer.maybeDeferred(port.stopListening)
        # What was received is given to the engine (and pending joins finished)
        # before the engine closes; the worker's own thread does it, in order.
        yield threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                        self.worker.stop)
        if self.feed is not None:
            self.counters.update(self.feed)


def make_feed_service(
    config: Config, engines: EngineService, reactor: Any, metrics: Metrics
) -> Service | None:
    """The feed service for `config`, or None when there is nothing to follow."""
    source = config.maillog.source
    if source == "none":
        log.warning("[maillog] source = \"none\": no delivery outcomes are read, so "
                    "delivery failures are never counted")
        return None
    if source == "file":
        return FileFeedService(config, engines, reactor, metrics)
    return SyslogFeedService(config, engines, reactor, metrics)
