"""The engine's exchange with the other smarthosts on one store (`[store] shared_*`).

Each host writes its own failure windows and reads the others' back, and reads
the others' use of restricted senders' budgets; both lag by one flush
interval. Functions on the engine's store side (`StoreSync`), kept apart from
its own writes: a single host never calls them.
"""

from __future__ import annotations

import threading
from typing import Protocol

from extrusion.scoring.failwindow import PRUNE_SECONDS, FailureShare
from extrusion.scoring.judge import Judge
from extrusion.scoring.limits import NO_OTHERS, RateState
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.settings import EngineSettings
from extrusion.scoring.store import Store


class StoreSync(Protocol):
    """What these functions use of the engine's store side (`sync.StoreSync`): named
    here so that this module does not import the one that calls it."""

    store: Store
    window: float
    mta: str
    judge: Judge
    config: EngineSettings
    _lock: threading.RLock
    _senders: dict[str, SenderMemory]
    _shared: set[str]
    _failures: FailureShare

    def _store_failed(self, what: str, exc: Exception) -> None: ...


def share_failures(engine: StoreSync, now: float) -> None:
    """This host's failure windows out and, while any is in play here or elsewhere,
    the other hosts' back in: one flush interval's lag (failwindow.py)."""
    if not engine.config.store.shared_failures:
        return
    with engine._lock:
        snapshots = engine._failures.drain()
    prune = None
    if now >= engine._failures.next_prune:
        engine._failures.next_prune = now + PRUNE_SECONDS
        prune = now - engine.window
    if snapshots or prune is not None:
        try:
            engine.store.save_failure_windows(engine.mta, snapshots, prune)
        except Exception as exc:
            with engine._lock:
                engine._failures.restore(snapshots)
            engine._store_failed("writing failure windows", exc)
            return
    if snapshots or engine._failures.others:
        refresh_failures(engine, now)


def refresh_failures(engine: StoreSync, now: float) -> None:
    """The other hosts' failure windows of the senders in play here (failwindow.py)."""
    try:
        rows = engine.store.others_failures(engine.mta, now - engine.window)
    except Exception as exc:
        engine._store_failed("reading the other hosts' failure windows", exc)
        return
    with engine._lock:
        engine._failures.adopt(engine._senders, rows)


def refresh_use(engine: StoreSync, now: float) -> None:
    """The other hosts' share of restricted senders' budgets (shared.py)."""
    try:
        uses = engine.store.others_use(engine.mta, now, engine.judge.probation.window)
    except Exception as exc:
        engine._store_failed("reading the other hosts' budgets", exc)
        return
    with engine._lock:
        for key in engine._shared - uses.keys():
            mem = engine._senders.get(key)
            if mem is not None and mem.rates is not None:
                mem.rates.others = NO_OTHERS
        for key, use in uses.items():
            mem = engine._senders.get(key)
            if mem is not None:
                if mem.rates is None:
                    mem.rates = RateState()
                mem.rates.others = use
        engine._shared = {k for k in uses if k in engine._senders}
