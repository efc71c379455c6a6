"""The store's prune taken a slice at a time (`Store.prune_some`), and the retry that
both it and the batched writes give a PostgreSQL deadlock."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TypeVar

from extrusion.scoring import retention
from extrusion.scoring.database import Database, StoreUnavailable
from extrusion.scoring.dialects import WritePath

DEADLOCK_RETRIES = 5
_T = TypeVar("_T")


def retrying_deadlocks(attempt: Callable[[], _T]) -> _T:
    """`attempt()` (one transaction), taken again when PostgreSQL ended it as one of two
    writers locking the same rows in another order: rolled back whole, it is safe to
    repeat. Any other failure, or the last deadlock, is raised."""
    for n in range(DEADLOCK_RETRIES):
        try:
            return attempt()
        except StoreUnavailable as e:
            if "deadlock" not in str(e) or n == DEADLOCK_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


class Pruner:
    """A prune under way: the daemon prunes in its flushing thread, so a backlog is taken
    a slice at a time, each call going on where the last one stopped (retention.Prune)."""

    def __init__(self, db: Database, path: WritePath) -> None:
        self._db = db
        self._path = path
        self._plan: retention.Prune | None = None

    def prune_some(self, before: float, detail_before: float | None,
                   counters_before: float | None, batch: int | None, seconds: float
                   ) -> tuple[int, bool]:
        """Prune for about `seconds` at most: (rows removed, whether it is done)."""
        dialect = self._db.dialect
        if batch == retention.BACKEND:
            batch = retention.batch_size(dialect)
        p = self._plan
        if p is None or not p.serves(before, detail_before, batch, counters_before):
            p = self._plan = retention.Prune.plan(self._path, before, detail_before, batch,
                                                  counters_before)
        removed, end = 0, time.monotonic() + seconds
        for walk in p.pending():
            while not walk.done:
                started = time.monotonic()
                removed += retrying_deadlocks(functools.partial(self._step, walk))
                if walk.done:
                    break
                if time.monotonic() >= end:
                    return removed, False
                if dialect == "sqlite":
                    # SQLite has one writer at a time; other processes' writers only poll
                    # (every 1-100 ms): pause as long as the batch took, for their turn.
                    time.sleep(min(max(time.monotonic() - started, 0.002), 0.1))
        self._plan = None
        return removed, True

    def _step(self, walk: retention.Walk) -> int:
        with self._db.write() as conn:
            n, last = walk.step(conn, walk.after)
        walk.advance(last)  # committed: a batch rolled back is taken again
        return n
