"""A Twisted service that follows a file into the engine: every `poll_seconds` a worker
thread reads what was appended, one poll at a time, and nothing runs before the engine
is open (what was written waits in the file; the checkpoint says where we were).

The mail log's `FileFeedService` (extrusion.policyd.feed) and the flow records'
`FlowFeedService` (extrusion.flows.service) are the two followers; this is what
they share, here so neither adapter imports the other.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task, threads


class EnginePoller(Service):
    """Subclasses give `_poll(engine)` (worker thread), `_failed(failure)` and may keep a
    `follower` with a `close()`, closed on a worker thread when the service stops."""

    def __init__(self, engines: Any, reactor: Any, poll_seconds: float,
                 log: logging.Logger, what: str) -> None:
        self.engines = engines  # extrusion.policyd.engineservice.EngineService
        self.reactor = reactor
        self.follower: Any = None
        self._poll_seconds = poll_seconds
        self._log = log
        self._what = what
        self._loop: task.LoopingCall | None = None
        self._loop_done: defer.Deferred[Any] | None = None
        #: Fires after the first poll with an engine: from then on the follower is
        #: positioned and nothing written later can be missed.
        self.ready: defer.Deferred[None] = defer.Deferred()

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop_done = self._loop.start(self._poll_seconds, now=True)
        self._loop_done.addErrback(
            lambda f: self._log.error("%s stopped: %s", self._what, f.getErrorMessage()))

    def _before_tick(self) -> None:
        """On the reactor, before each poll (with or without an engine)."""

    def _tick(self) -> defer.Deferred[Any] | None:
        self._before_tick()
        engine = self.engines.engine
        if engine is None:
            return None  # what was written waits in the file
        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self._poll, engine
        ).addErrback(self._failed)
        return d.addBoth(self._first_poll_done)

    def _first_poll_done(self, result: Any) -> Any:
        if not self.ready.called:
            self.ready.callback(None)
        return result

    def _poll(self, engine: Any) -> int:
        raise NotImplementedError

    def _failed(self, failure: Any) -> None:
        raise NotImplementedError

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Stop polling (an in-flight poll finishes first), then close the follower."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
            yield self._loop_done
        follower, self.follower = self.follower, None
        if follower is not None:
            # On a worker thread: closing finishes the follower's open work first.
            yield threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                            follower.close)
