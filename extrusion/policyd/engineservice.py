"""Owns the engine: opens it (retrying while the store is down) and keeps it in sync.

The reactor thread never waits on the database. Opening the engine, the
periodic `flush()` (queued events to the store) and `refresh()` (states
written by other processes), the senders-by-state gauge and `close()` all
run in the reactor's thread pool, one maintenance job at a time. While the
engine cannot be opened, `engine` is None and the policy server answers the
configured default action; it retries every `retry_seconds` and recovers by
itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task, threads
from twisted.python.failure import Failure

from extrusion.burstlog import BurstLog, exception_text
from extrusion.config import Config
from extrusion.policyd.metrics import Metrics
from extrusion.scoring.api import EngineAPI
from extrusion.scoring.engine import store_of
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.retention import counter_boundary, detail_boundary

log = logging.getLogger("extrusion.policyd")

Opener = Callable[[Config], EngineAPI]


class StoreDown(Exception):
    """The engine reports its store unreachable (it spools meanwhile)."""
#: How often the senders-by-state gauge is recounted from the store (seconds).
GAUGE_SECONDS = 60.0
PRUNE_SECONDS = 3600.0  # retention is in days: pruning hourly is plenty
PRUNE_SLICE_SECONDS = 0.5  # pruning per sync at most, between two flushes


class EngineService(Service):
    """Twisted service around one engine; `engine` is None until the store could be opened."""

    def __init__(
        self,
        config: Config,
        opener: Opener,
        reactor: Any,
        metrics: Metrics,
        *,
        listeners: list[Callable[[StateChange], None]] | None = None,
        sender_counts: Callable[[EngineAPI], dict[str, int]] | None = None,
    ) -> None:
        self.config = config
        self.opener = opener
        self.reactor = reactor
        self.metrics = metrics
        self.listeners = list(listeners or [])
        self.sender_counts = sender_counts
        self._engine: EngineAPI | None = None
        self._loop: task.LoopingCall | None = None
        self._retry: Any = None
        self._opening: defer.Deferred[Any] | None = None
        self._syncing: defer.Deferred[Any] | None = None
        self._next_refresh = 0.0
        self._quarantined = 0  # the engine's count of rows set aside, as last reported
        self._memory_counts: dict[str, int] = {}  # the cap's counts, as last reported
        self._next_prune = 0.0
        self._next_gauge = 0.0
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._open_errors = BurstLog(log, "opening the store", reactor.seconds)
        self._sync_errors = BurstLog(log, "store sync (flush/refresh)", reactor.seconds)
        self.last_sync_ok: float | None = None
        self.last_error: str = ""
        #: True once the engine has read the senders from the store (set, never cleared).
        self.loaded = False

    @property
    def engine(self) -> EngineAPI | None:
        """The engine, for recording events and operator actions (it spools while the
        store is down); None until it could be created."""
        return self._engine

    @property
    def judging(self) -> EngineAPI | None:
        """The engine once it knows the senders' states (it has reached the store at
        least once); until then decisions would be blind, so the default action answers.
        After that a store outage does not matter here: it answers from memory."""
        return self._engine if self.loaded else None

    @property
    def decisions(self) -> _Judging:
        """`EngineSource` view for the responder: `.engine` is `judging`."""
        return _Judging(self)

    @property
    def healthy(self) -> bool:
        return self._engine is not None and self.loaded and not self._sync_errors.failing

    def _thread(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    # --- opening ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._open()

    def _open(self) -> None:
        self._retry = None
        self._opening = self._thread(self.opener, self.config)
        self._opening.addCallbacks(self._opened, self._open_failed)

    def _opened(self, engine: EngineAPI) -> None:
        self._opening = None
        if not self.running:  # stopped while the store was being opened
            self._thread(engine.close)
            return
        for listener in self.listeners:
            engine.add_listener(listener)
        self._engine = engine
        self.loaded = bool(getattr(engine, "store_ok", True))
        self.metrics.engine_up.set(1)
        self._open_errors.recovered()
        log.info("engine open (store %s)", _safe_url(self.config.store.url))
        self._loop = task.LoopingCall(self._maintain)
        self._loop.clock = self.reactor
        self._loop.start(self.config.policyd.flush_seconds, now=True).addErrback(
            lambda f: log.error("maintenance loop stopped: %s", f.getErrorMessage())
        )
        self._fire_ready()

    def _open_failed(self, failure: Failure) -> None:
        self._opening = None
        self.metrics.store_errors.labels("open").inc()
        self.last_error = failure.getErrorMessage()
        self._open_errors.failed(exception_text(failure.value or Exception(self.last_error)))
        if self.running:
            self._retry = self.reactor.callLater(
                self.config.policyd.engine_retry_seconds, self._open
            )
        self._fire_ready()

    def _fire_ready(self) -> None:
        if not self.ready.called:
            self.ready.callback(None)

    # --- periodic sync ------------------------------------------------------------------

    def _maintain(self) -> defer.Deferred[Any]:
        engine = self._engine
        if engine is None:
            return defer.succeed(None)
        d = self._thread(self._sync, engine, self.reactor.seconds())
        d.addCallbacks(self._synced, self._sync_failed)
        self._syncing = d

        def done(result: Any) -> Any:
            self._syncing = None
            return result

        return d.addBoth(done)

    def _sync(self, engine: EngineAPI, now: float) -> dict[str, int] | None:
        """Worker thread: push queued events, pull others' states, recount the gauge."""
        engine.flush()
        self._count_quarantined(engine)
        self._count_memory(engine)
        refreshed = False
        if now >= self._next_refresh:
            engine.refresh(now)
            self._next_refresh = now + self.config.store.refresh_seconds
            refreshed = True
        # The engine does not raise for an outage (it spools and answers from
        # memory) but says so; an outage is a failed sync for health and metrics.
        if not getattr(engine, "store_ok", True):
            raise StoreDown(getattr(engine, "last_store_error", "") or "store unavailable")
        if refreshed:
            # refresh() just read every sender changed since the last good read, so
            # after a start with the store down the engine now knows the states.
            self.loaded = True
        self._prune(engine, now)
        if self.sender_counts is not None and now >= self._next_gauge:
            self._next_gauge = now + GAUGE_SECONDS
            return self.sender_counts(engine)
        return None

    def _count_quarantined(self, engine: EngineAPI) -> None:
        """Worker thread: the engine's count of refused rows set aside, into the metric."""
        rows = getattr(getattr(engine, "quarantine", None), "rows", 0)
        if rows > self._quarantined:
            self.metrics.quarantined.inc(rows - self._quarantined)
        self._quarantined = rows

    def _count_memory(self, engine: EngineAPI) -> None:
        """Worker thread: senders in memory and what the cap forgot, into the metrics."""
        status = getattr(engine, "status", None)
        if status is None:
            return
        s = status()
        self.metrics.senders_in_memory.set(s.get("senders", 0))
        for counter, name in ((self.metrics.senders_evicted, "senders_evicted"),
                              (self.metrics.senders_over_cap, "senders_over_cap")):
            total = s.get(name, 0)
            seen = self._memory_counts.get(name, 0)
            if total > seen:
                counter.inc(total - seen)
            self._memory_counts[name] = total

    def _prune(self, engine: EngineAPI, now: float) -> None:
        """Worker thread: fold detail past `[store] detail_days` and drop evidence past
        `retention_days`, at most hourly."""
        days, detail = self.config.store.retention_days, self.config.store.detail_days
        store = store_of(engine)
        if not (days or detail) or store is None or now < self._next_prune:
            return
        removed, done = store.prune_some(
            now - days * 86400 if days else 0.0,
            detail_before=detail_boundary(now, detail) if detail else None,
            counters_before=(counter_boundary(now, detail, self.config.flows.window_seconds)
                             if detail else None),
            seconds=PRUNE_SLICE_SECONDS)
        # This thread flushes too: a backlog (a first fold, say) goes a slice a sync.
        self._next_prune = now + (PRUNE_SECONDS if done else 0.0)
        if removed:
            log.info("pruned or folded %d rows (detail %g days, retention %g days)",
                     removed, detail, days)

    def _synced(self, counts: dict[str, int] | None) -> None:
        self.last_sync_ok = time.time()
        self._sync_errors.recovered()
        self.last_error = ""
        if counts is not None:
            for state in State:
                self.metrics.senders.labels(state.value).set(counts.get(state.value, 0))

    def _sync_failed(self, failure: Failure) -> None:
        # Never let the loop die: the engine spools what it cannot write, and the
        # next tick tries again.
        self.metrics.store_errors.labels("sync").inc()
        self.last_error = failure.getErrorMessage()
        self._sync_errors.failed(exception_text(failure.value or Exception(self.last_error)))

    # --- reload and stop ----------------------------------------------------------------

    def reload(self, config: Config) -> defer.Deferred[bool]:
        """Hand a new, already validated config to the engine (thresholds, overrides, limits)."""
        self.config = config
        engine = self._engine
        reload = getattr(engine, "reload", None)
        if reload is None:
            return defer.succeed(False)
        return self._thread(reload, config).addCallback(lambda _: True)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._syncing is not None:
            yield self._syncing  # never fails: its errors are handled above
        engine, self._engine = self._engine, None
        self.metrics.engine_up.set(0)
        if engine is not None:
            try:
                yield self._thread(engine.close)  # flushes what is still queued
            except Exception as exc:  # the store may be gone; the engine spooled what it could
                log.error("closing the engine failed: %s", exc)


class _Judging:
    def __init__(self, service: EngineService) -> None:
        self._service = service

    @property
    def engine(self) -> EngineAPI | None:
        return self._service.judging


def _safe_url(url: str) -> str:
    """The store URL without a password, for the log."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        rest = f"{user}@{host}"
    return f"{scheme}{sep}{rest}"
