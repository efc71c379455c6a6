"""Every call from the milter into the engine goes through here, with a deadline.

The MTA waits on the milter, so the engine must never hold up mail: a call
that raises, or does not answer within `engine_timeout`, is reported as a
failure and the caller acts as `on_error` says. While a timed-out call is
still running, further calls fail at once instead of piling up behind it
(a stuck lock must not become one stuck thread per SMTP session).

Events the engine could not take wait in a bounded backlog; a background
thread replays them once the engine answers again, and meanwhile asks the
engine to refresh shared state and flush its write queue. (A store outage
alone does not reach the backlog: the engine spools its own writes.)
Failures are logged once per burst, with a count when the burst ends.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from extrusion.milter.backlog import Backlog, Event
from extrusion.scoring.api import EngineAPI
from extrusion.scoring.events import Connection

log = logging.getLogger("extrusion.milter")

T = TypeVar("T")

# Enough workers for a busy smarthost's concurrent sessions: a call takes
# microseconds, so a handful of threads keep up with hundreds of sessions.
WORKERS = 8
# Events handed over without waiting, at most this many at a time; more go to the backlog.
MAX_LATER = 1000
# A failure burst that goes on is re-announced this often, with its count.
BURST_REPEAT_SECONDS = 60.0


class EngineFailure(Exception):
    """The engine did not answer in time, or raised; the message says which.

    `still_running`: the call timed out but goes on in the background.
    """

    def __init__(self, reason: str, *, still_running: bool = False) -> None:
        super().__init__(reason)
        self.still_running = still_running


class BurstLog:
    """One line when failures start, a reminder while they go on, one when they stop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._since: float | None = None
        self._last_said = 0.0
        self._count = 0

    def failed(self, what: str, reason: str) -> None:
        with self._lock:
            now = self._clock()
            self._count += 1
            if self._since is None:
                self._since = self._last_said = now
                log.error("engine failing (%s: %s); mail continues as on_error says, "
                          "repeats suppressed", what, reason)
            elif now - self._last_said >= BURST_REPEAT_SECONDS:
                self._last_said = now
                log.error("engine still failing (%s: %s): %d failed calls in %.0fs",
                          what, reason, self._count, now - self._since)

    def succeeded(self) -> None:
        if self._since is None:  # the common case, read without taking the lock
            return
        with self._lock:
            if self._since is None:
                return
            log.warning("engine answers again after %d failed calls in %.1fs",
                        self._count, self._clock() - self._since)
            self._since = None
            self._count = 0

    @property
    def failing(self) -> bool:
        return self._since is not None


class EngineGuard:
    """Deadline, circuit breaker, burst log and event backlog around one engine."""

    def __init__(
        self,
        engine: EngineAPI,
        *,
        timeout: float,
        backlog: Backlog | None = None,
        housekeeping_seconds: float = 1.0,
        refresh_seconds: float = 3.0,
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.burst = BurstLog()
        self.backlog = backlog if backlog is not None else Backlog()
        self._pool = concurrent.futures.ThreadPoolExecutor(WORKERS, "extrusion-engine")
        self._lock = threading.Lock()
        self._stuck = 0  # timed-out calls still running
        self._later = 0  # record_later() calls not finished
        self._idle = threading.Condition(self._lock)
        self._housekeeping_seconds = housekeeping_seconds
        self._refresh_seconds = refresh_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- calls on the MTA's path ---------------------------------------------------------

    def call(self, what: str, fn: Callable[[], T], events: tuple[Handoff, ...] = ()) -> T:
        """Run `fn` on an engine worker; raise EngineFailure unless it answers in time.

        `events` are handoffs `fn` delivers on the way (one trip to the worker
        for a callback's events and its decision): whatever happens to the
        call, each event ends up either in the engine or in the backlog, once.
        """
        try:
            future = self._submit(what, fn)
        except EngineFailure:
            for h in events:
                h.settle(still_running=False)
            raise
        try:
            result = future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            self._watch_stuck(future)
            for h in events:
                h.settle(still_running=True)
            reason = f"no answer within {self.timeout:g}s"
            self.burst.failed(what, reason)
            raise EngineFailure(reason, still_running=True) from None
        except Exception as exc:
            for h in events:
                h.settle(still_running=False)
            reason = f"{type(exc).__name__}: {exc}"
            self.burst.failed(what, reason)
            raise EngineFailure(reason) from exc
        for h in events:
            h.settle(still_running=False)
        if not any(h.failed for h in events):
            self.burst.succeeded()
        return result

    def handoff(self, event: Event) -> Handoff:
        """An event to deliver inside a call(); see `call`."""
        return Handoff(event, self.backlog, self.burst)

    def record(self, event: Event) -> None:
        """Hand an event to the engine; keep it for later if the engine cannot take it now."""
        h = self.handoff(event)
        with contextlib.suppress(EngineFailure):
            self.call(h.what, lambda: h.deliver(self.engine), (h,))

    def record_later(self, event: Event) -> None:
        """Like record(), without waiting: nothing on the MTA's side needs the answer."""
        h = self.handoff(event)
        with self._lock:
            crowded = self._later >= MAX_LATER
            if not crowded:
                self._later += 1
        if crowded:  # the engine is not keeping up: do not queue without bound
            h.settle(still_running=False)
            return
        try:
            future = self._submit(h.what, lambda: h.deliver(self.engine))
        except (EngineFailure, RuntimeError):  # refused, or the pool is shut down
            self._done_later()
            h.settle(still_running=False)
            return
        h.settle(still_running=True)  # nobody waits: deliver() keeps it if it fails
        future.add_done_callback(lambda _f: self._done_later())

    def _done_later(self) -> None:
        with self._idle:
            self._later -= 1
            if not self._later:
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every record_later() has been delivered or kept."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._later, timeout)

    def _submit(self, what: str, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._stuck:
                reason = "an earlier call has not returned"
                self.burst.failed(what, reason)
                raise EngineFailure(reason)
            return self._pool.submit(fn)

    def _watch_stuck(self, future: concurrent.futures.Future[T]) -> None:
        with self._lock:
            self._stuck += 1

        def done(_f: concurrent.futures.Future[T]) -> None:
            with self._lock:
                self._stuck -= 1

        future.add_done_callback(done)

    # --- background housekeeping -----------------------------------------------------------

    def start(self) -> None:
        """Start the thread that replays the backlog and refreshes/flushes the engine."""
        self._thread = threading.Thread(
            target=self._run, name="extrusion-housekeeping", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        next_refresh = time.monotonic() + self._refresh_seconds
        while not self._stop.wait(self._housekeeping_seconds):
            self.replay_backlog()
            now = time.monotonic()
            if now >= next_refresh:
                next_refresh = now + self._refresh_seconds
                self._direct("refresh", self.engine.refresh)
                self._direct("flush", self.engine.flush)

    def _direct(self, what: str, fn: Callable[[], object]) -> bool:
        """Call the engine on this (background) thread: no deadline, nobody waits on it."""
        try:
            fn()
        except Exception as exc:
            self.burst.failed(what, f"{type(exc).__name__}: {exc}")
            return False
        self.burst.succeeded()
        return True

    def replay_backlog(self) -> int:
        """Give waiting events to the engine, oldest first; stop at the first failure."""
        done = 0
        while (event := self.backlog.peek()) is not None:
            if not self._direct("replay", lambda ev=event: _send(self.engine, ev)):  # type: ignore[misc]
                break
            self.backlog.pop_first(event)
            done += 1
        return done

    def close(self) -> None:
        """Stop housekeeping, replay what can be replayed, save the rest, close the engine."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.wait_idle(self.timeout * 10)
        self._pool.shutdown(wait=True)
        self.replay_backlog()
        self.backlog.save()
        self._direct("close", self.engine.close)


def _send(engine: EngineAPI, event: Event) -> None:
    if isinstance(event, Connection):
        engine.connection(event)
    else:
        engine.submission(event)


class Handoff:
    """One event on its way to the engine; kept exactly once if it does not get there.

    The caller may stop waiting (deadline) while the worker is still delivering.
    `deliver` (on the worker) never raises; `settle` (by the caller, after the
    call) keeps the event if it failed or never ran; a delivery that fails after
    the caller gave up keeps it itself.
    """

    def __init__(self, event: Event, backlog: Backlog, burst: BurstLog) -> None:
        self.event = event
        self.what = "connection" if isinstance(event, Connection) else "submission"
        self._backlog = backlog
        self._burst = burst
        self._lock = threading.Lock()
        self._ran = False
        self._settled = False
        self.failed = False

    def deliver(self, engine: EngineAPI) -> None:
        try:
            _send(engine, self.event)
        except Exception as exc:
            self._burst.failed(self.what, f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._ran = self.failed = True
                if self._settled:  # nobody waits any more: keep it here
                    self._backlog.add(self.event)
            return
        with self._lock:
            self._ran = True

    def settle(self, *, still_running: bool) -> None:
        with self._lock:
            self._settled = True
            if self.failed or (not self._ran and not still_running):
                self._backlog.add(self.event)
