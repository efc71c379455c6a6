"""`[flows] enabled`: the policy daemon (`serve`, `policyd`) follows pmacct's output.

Like the mail log's `FileFeedService`: every `poll_seconds` a worker thread
reads what sfacctd appended, gives the findings to the engine, flushes and
saves the checkpoint; nothing runs before the engine is open (the records
wait in the file, the checkpoint says where we were).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task, threads

from extrusion.config import Config

log = logging.getLogger("extrusion.flows")


class FlowFeedService(Service):
    def __init__(self, config: Config, engines: Any, reactor: Any) -> None:
        self.config = config
        self.engines = engines  # extrusion.policyd.engineservice.EngineService
        self.reactor = reactor
        self.follower: Any = None
        self._pending: Config | None = None  # a reloaded config, for the next poll
        self._pending_lock = threading.Lock()  # set by the reactor, taken by the poll
        self._loop: task.LoopingCall | None = None
        self._loop_done: defer.Deferred[Any] | None = None
        #: Fires after the first poll with an engine: from then on the follower is
        #: positioned and no record written later can be missed.
        self.ready: defer.Deferred[None] = defer.Deferred()

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop_done = self._loop.start(self.config.flows.poll_seconds, now=True)
        self._loop_done.addErrback(
            lambda f: log.error("flow follower stopped: %s", f.getErrorMessage()))

    def _tick(self) -> defer.Deferred[Any] | None:
        engine = self.engines.engine
        if engine is None:
            return None
        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self._poll, engine
        ).addErrback(self._failed)
        return d.addBoth(self._first_poll_done)

    def _first_poll_done(self, result: Any) -> Any:
        if not self.ready.called:
            self.ready.callback(None)
        return result

    def reload(self, config: Config) -> None:
        """SIGHUP, validated config: applied by the polling thread before its next read,
        so a record is never judged half by the old settings and half by the new."""
        with self._pending_lock:
            self._pending = config

    def _poll(self, engine: Any) -> int:
        """Worker thread."""
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            if self.follower is not None:
                self.follower.configure(pending)
            self.config = pending
            log.info("flows: reloaded (min_destinations %d, min_networks %d, sampling 1:%d)",
                     pending.flows.min_destinations, pending.flows.min_networks,
                     pending.flows.sampling_rate)
        if self.follower is None:
            from extrusion.flows.follow import FlowFollower

            self.follower = FlowFollower(self.config, engine)
            log.info("following flow records in %s", self.config.flows.path)
        n: int = self.follower.poll()
        return n

    def _failed(self, failure: Any) -> None:
        # A missing file or a store hiccup: say so, keep polling (the follower resumes).
        log.warning("flow follower: %s", failure.getErrorMessage())

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
            yield self._loop_done  # an in-flight poll finishes first
        follower, self.follower = self.follower, None
        if follower is not None:
            yield threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                            follower.close)
