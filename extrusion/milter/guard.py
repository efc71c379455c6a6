"""Every call from the milter into the engine goes through here.

The MTA waits on the milter, so the engine must not hold up mail. Calls run
on the session's own thread (the engine answers from memory in microseconds;
a hop to a worker thread would cost ten times that on every callback), and a
watchdog watches them: once a call has gone `engine_timeout` without an
answer, every further call fails at once, and the callbacks act as
`on_error` says, until the slow call returns. So a hung engine holds up at
most the sessions that were inside it when it hung (and those only until
the MTA's own milter timeout, after which Postfix applies
milter_default_action); it never becomes one stuck thread per new session.
A call that raises is a failure too.

Events the engine could not take wait in a bounded backlog that a background
thread replays once the engine answers again; the same thread asks the
engine to refresh shared state and flush its write queue. (A store outage
alone does not reach the backlog: the engine spools its own writes.)
Failures are logged once per burst, with a count when the burst ends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from extrusion.burstlog import BurstLog, exception_text
from extrusion.milter.backlog import Backlog, Event
from extrusion.scoring.api import EngineAPI
from extrusion.scoring.events import Connection

log = logging.getLogger("extrusion.milter")

T = TypeVar("T")

# The watchdog looks at calls in progress this often (and at least 4 times per deadline).
WATCH_SECONDS = 0.05


class EngineFailure(Exception):
    """The engine did not answer in time, or raised; the message says which."""


class EngineGuard:
    """Watchdog, circuit breaker, burst log and event backlog around one engine."""

    def __init__(
        self,
        engine: EngineAPI,
        *,
        timeout: float,
        backlog: Backlog | None = None,
        housekeeping_seconds: float = 1.0,
        refresh_seconds: float = 3.0,
        owns_engine: bool = True,
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.burst = BurstLog(log, "engine", level=logging.ERROR,
                              note="; mail continues as on_error says, repeats suppressed")
        self.backlog = backlog if backlog is not None else Backlog()
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[str, float]] = {}  # call id -> (what, started)
        self._late: set[int] = set()  # calls past the deadline, still running
        self._next_id = 0
        self._housekeeping_seconds = housekeeping_seconds
        self._refresh_seconds = refresh_seconds
        # False under `extrusion serve`: the policy daemon's engine service refreshes,
        # flushes and closes the engine both share; this guard only replays its backlog.
        self._owns_engine = owns_engine
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False

    # --- calls on the MTA's path ---------------------------------------------------------

    def call(self, what: str, fn: Callable[[], T], events: tuple[Event, ...] = ()) -> T:
        """`fn()`, or EngineFailure if the engine is stuck or `fn` raises.

        `events` are delivered first, on the same call (a callback's events and
        its decision in one go); an event the engine does not take is kept in
        the backlog, and a failed event does not cost the decision.
        """
        with self._lock:
            stuck = bool(self._late)
            if not stuck:
                call_id = self._next_id = self._next_id + 1
                self._calls[call_id] = (what, time.monotonic())
        if stuck:
            for event in events:
                self.backlog.add(event)
            reason = "an earlier call has not returned"
            self.burst.failed(f"{what}: {reason}")
            raise EngineFailure(reason)
        try:
            delivered = True
            for event in events:  # every one, even after a failure
                if not self._deliver(event):
                    delivered = False
            result = fn()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.burst.failed(f"{what}: {reason}")
            raise EngineFailure(reason) from exc
        finally:
            with self._lock:
                del self._calls[call_id]
                if self._late:
                    self._late.discard(call_id)
        if delivered:
            self.burst.recovered()
        return result

    def record(self, event: Event) -> None:
        """Hand an event to the engine; keep it for later if the engine cannot take it now."""
        with contextlib.suppress(EngineFailure):  # kept, and said once for the burst
            self.call(_what(event), _nothing, (event,))

    def _deliver(self, event: Event) -> bool:
        try:
            _send(self.engine, event)
        except Exception as exc:
            self.backlog.add(event)
            self.burst.failed(f"{_what(event)}: {exception_text(exc)}")
            return False
        return True

    # --- the watchdog ------------------------------------------------------------------------

    def watch(self) -> None:
        """Mark calls past the deadline (the breaker stays open while any is running)."""
        now = time.monotonic()
        with self._lock:
            late = [(i, what) for i, (what, started) in self._calls.items()
                    if i not in self._late and now - started >= self.timeout]
            self._late.update(i for i, _ in late)
        for _i, what in late:
            self.burst.failed(f"{what}: no answer within {self.timeout:g}s")

    @property
    def stuck(self) -> bool:
        return bool(self._late)

    # --- background threads ----------------------------------------------------------------

    def start(self) -> None:
        """Start the watchdog and the thread that replays the backlog and refreshes/flushes."""
        for name, target in (("extrusion-watchdog", self._watch_loop),
                             ("extrusion-housekeeping", self._housekeeping_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _watch_loop(self) -> None:
        while not self._stop.wait(min(WATCH_SECONDS, self.timeout / 4)):
            self.watch()

    def _housekeeping_loop(self) -> None:
        next_refresh = time.monotonic() + self._refresh_seconds
        while not self._stop.wait(self._housekeeping_seconds):
            if self.stuck:
                continue
            self.replay_backlog()
            now = time.monotonic()
            if self._owns_engine and now >= next_refresh:
                next_refresh = now + self._refresh_seconds
                self._direct("refresh", self.engine.refresh)
                self._direct("flush", self.engine.flush)

    def _direct(self, what: str, fn: Callable[[], object]) -> bool:
        """Call the engine on this (background) thread: nobody waits on it."""
        try:
            fn()
        except Exception as exc:
            self.burst.failed(f"{what}: {exception_text(exc)}")
            return False
        self.burst.recovered()
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
        """Stop the threads, replay what can be replayed, save the rest, close the engine."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.replay_backlog()
        self.backlog.save()
        if self._owns_engine:
            self._direct("close", self.engine.close)


def _nothing() -> None:
    """The decision-less call that carries `record`'s event."""


def _what(event: Event) -> str:
    return "connection" if isinstance(event, Connection) else "submission"


def _send(engine: EngineAPI, event: Event) -> None:
    if isinstance(event, Connection):
        engine.connection(event)
    else:
        engine.submission(event)
