"""The store: all persistent state of extrusion, SQLite or PostgreSQL (SQLAlchemy Core).

Writes come in batches (`write_batch`, one transaction, executemany) because
the engine records tens of thousands of events per second; reads serve the
engine's refresh, the log followers' checkpoints, the CLI and the reports.

This module is the one object the engine and every other reader are given; the
jobs behind it live in their own modules: the connection and what a failure
means (`database.py`: `StoreUnavailable` is retried later, `StoreRefused`
never as is), migrations (`migrate.py`), one write path per database behind a
small interface (`dialects.py`), the batched writes (`batchwrite.py`), single
writes (`writes.py`), the reads (`reads.py`, and `reportreads.py` for reports).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from extrusion.checkpoint import Position
from extrusion.scoring import (
    batchwrite,
    failwindow,
    messagereads,
    migrate,
    reads,
    reportreads,
    retention,
    schema,
    writes,
)
from extrusion.scoring.bounds import bound_batch
from extrusion.scoring.database import Database, StoreError, StoreRefused, StoreUnavailable
from extrusion.scoring.dialects import write_path
from extrusion.scoring.events import StateChange
from extrusion.scoring.limits import OthersUse
from extrusion.scoring.names import Names, day_of
from extrusion.scoring.pruning import Pruner, retrying_deadlocks
from extrusion.scoring.reportreads import ListedMessage, RecipientHistory, SenderTotals
from extrusion.scoring.rows import Batch, OverrideRow, SenderRow, StoredMessage
from extrusion.scoring.writes import state_change_row

# Rows changed this long before a refresh began are read again: a writer stamps
# changed_at when its transaction starts but commits a little later.
REFRESH_OVERLAP_SECONDS = 5.0
# Secondary indexes nothing reads while the engine records a replay (see deferred_indexes).
_LOAD_DEFERRED_INDEXES = frozenset({"ix_messages_sender_time", "ix_messages_time"})

__all__ = ["Store", "StoreError", "StoreRefused", "StoreUnavailable", "open_store",
           "state_change_row"]


class Store:
    """All persistent state of extrusion. Thread-safe (one SQLAlchemy engine, a pool)."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000, create: bool = True,
                 durable: bool = True) -> None:
        """`durable=False` is for a throw-away SQLite file that only this process uses
        (a replay's): no fsync, no write-ahead log, a big page cache."""
        self.url = url
        self._db = Database(url, busy_timeout_ms=busy_timeout_ms, durable=durable)
        self.dialect = self._db.dialect
        self._path = write_path(self.dialect)
        self._pruner = Pruner(self._db, self._path)  # a prune in slices, under way
        self._names = Names()  # name ids this process has seen
        try:
            if create:
                migrate.create(self._db, self._path, busy_timeout_ms)
        except BaseException:
            self._db.close()
            raise

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def upgrade(self, target: str = "head") -> str:
        """Apply pending migrations (up to `target`); the schema revision now in place."""
        return migrate.upgrade(self._db, self._path, target)

    @staticmethod
    def head_revision() -> str:
        return migrate.head_revision()

    def revision(self) -> str | None:
        with self._db.read() as conn:
            return migrate.current_revision(conn)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        with self._db.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    @contextmanager
    def deferred_indexes(self, *, build: bool = True) -> Iterator[None]:
        """Load a throw-away store in bulk (a replay): the indexes that only later readers
        use are dropped for the load and built once at the end (or, with `build=False`
        for a store nobody reads again, never).

        Built from sorted data, an index costs a fraction of keeping it up to date row by
        row: that was two thirds of the cost of writing the outcomes. Indexes the engine
        itself reads while recording (queue id lookups, senders) stay. Not for a store
        that others read at the same time.
        """
        deferred = [ix for t in (schema.messages, schema.counters)
                    for ix in sorted(t.indexes, key=lambda ix: str(ix.name))
                    if ix.name in _LOAD_DEFERRED_INDEXES]
        with self._db.write() as conn:
            for ix in deferred:
                ix.drop(conn)
        try:
            yield
        finally:
            if build:
                with self._db.write() as conn:
                    for ix in deferred:
                        ix.create(conn)

    # --- writes --------------------------------------------------------------------------

    def write_batch(self, batch: Batch, half_life: float) -> list[SenderRow]:
        """Write everything in one transaction; returns the merged sender rows.

        Raises StoreUnavailable (retry later) or StoreRefused (never retry as is)."""
        batch = bound_batch(batch)

        def attempt() -> list[SenderRow]:
            # Two PostgreSQL writers locking the same senders: the whole batch again.
            names = self._names.interning(day_of(batch.latest()))
            with self._db.write() as conn:
                merged = batchwrite.write_batch(conn, self._path, batch, half_life, names)
            self._names.learn(names)  # committed: the new ids name stored rows
            return merged

        return retrying_deadlocks(attempt)

    def put_sender(self, row: SenderRow) -> SenderRow:
        """Write one sender row as given (bumping its version); for admin tools."""
        with self._db.write() as conn:
            return writes.put_sender(conn, self._path, row)

    def claim_notifications(self, events: Sequence[tuple[str, str, float]], mta: str,
                            seconds: float) -> set[tuple[str, str]]:
        """The (sender, state) events of `events` (sender, state, time) that host `mta`
        is the one to notify: no other host claimed them within `seconds`
        (notify/claims.py). One upsert each; the row it leaves is the claim."""
        with self._db.write() as conn:
            return writes.claim_notifications(conn, self._path, events, mta, seconds)

    def set_override(self, row: OverrideRow) -> None:
        with self._db.write() as conn:
            batchwrite.upsert_override(conn, self._path, row)

    def delete_override(self, match: str) -> bool:
        with self._db.write() as conn:
            return writes.delete_override(conn, match)

    def add_state_change(self, change: StateChange) -> None:
        with self._db.write() as conn:
            writes.add_state_change(conn, change)

    def prune(self, before: float, *, detail_before: float | None = None,
              counters_before: float | None = None,
              batch: int | None = retention.BACKEND) -> int:
        """Fold messages and outcomes older than `detail_before` into days, delete
        minute counters older than `counters_before` (if not given, `detail_before`),
        then delete what is older than `before` (a baseline not updated since is a
        sender gone quiet); returns rows
        removed. One transaction per `batch` rows (0: the backend's own size,
        `retention.batch_size`; None: one statement a step, the unbatched reference
        for tests and benchmarks)."""
        return self.prune_some(before, detail_before=detail_before,
                               counters_before=counters_before, batch=batch)[0]

    def prune_some(self, before: float, *, detail_before: float | None = None,
                   counters_before: float | None = None,
                   batch: int | None = retention.BACKEND, seconds: float = float("inf")
                   ) -> tuple[int, bool]:
        """`prune`, for about `seconds` at most: (rows removed, whether it is done). The
        daemon prunes in its flushing thread, so a backlog is taken a slice at a time;
        the next call goes on where this one stopped (retention.Prune)."""
        return self._pruner.prune_some(before, detail_before, counters_before, batch, seconds)

    def save_baselines(self, baselines: dict[str, dict[str, Any]], now: float) -> None:
        """Write each sender's baseline whole (the latest one wins: it is a summary)."""
        if baselines:
            with self._db.write() as conn:
                writes.save_baselines(conn, self._path, baselines, now)

    def set_checkpoint(self, name: str, position: Position) -> None:
        position.check(name)
        with self._db.write() as conn:
            writes.set_checkpoint(conn, self._path, name, position)

    # --- reads ---------------------------------------------------------------------------

    def sender(self, key: str) -> SenderRow | None:
        with self._db.read() as conn:
            return reads.sender(conn, key)

    def senders(self, state: str | None = None, *,
                min_score: float | None = None) -> list[SenderRow]:
        """Senders (optionally in one state), highest stored score first."""
        with self._db.read() as conn:
            return reads.senders(conn, state, min_score)

    def changed_senders(self, since: float | None, *, quiet_before: float | None = None
                        ) -> tuple[list[SenderRow], float]:
        """Rows changed at or after `since` (None: all), and the mark for the next call.
        `quiet_before` (a start's load) leaves out the senders `ok`, unpinned and not
        scored since: the database skips them, not Python (most of a big store)."""
        with self._db.read() as conn:
            mark = self._path.now(conn) - REFRESH_OVERLAP_SECONDS
            return reads.changed_senders(conn, since, quiet_before), mark

    def changed_versions(self, since: float | None) -> tuple[list[tuple[str, int]], float]:
        """(key, version) of the rows `changed_senders(since)` would give, and the same
        mark: a refresh reads in full (`senders_keyed`) only the versions it lacks."""
        with self._db.read() as conn:
            mark = self._path.now(conn) - REFRESH_OVERLAP_SECONDS
            return reads.changed_versions(conn, since), mark

    def senders_keyed(self, keys: Sequence[str]) -> list[SenderRow]:
        """The stored rows of `keys`; a key without one is left out."""
        with self._db.read() as conn:
            return reads.senders_keyed(conn, keys)

    def overrides(self) -> list[OverrideRow]:
        with self._db.read() as conn:
            return reads.overrides(conn)

    def state_changes(self, sender: str | None = None, *, since: float | None = None,
                      until: float | None = None, limit: int | None = None
                      ) -> list[StateChange]:
        """The audit trail, oldest first."""
        with self._db.read() as conn:
            return reads.state_changes(conn, sender, since, until, limit)

    def message(self, queue_id: str, mta: str = "") -> StoredMessage | None:
        """The latest submission recorded under (mta, queue_id), without recipients."""
        with self._db.read() as conn:
            return messagereads.message(conn, queue_id, mta)

    def sender_for_queue_id(self, queue_id: str, mta: str = "") -> str | None:
        m = self.message(queue_id, mta)
        return None if m is None else m.sender

    def undelivered_queue_ids(self, sender: str, mta: str | None = None) -> list[str]:
        """Queue ids of the sender's messages with recipients still lacking a final outcome."""
        with self._db.read() as conn:
            return messagereads.undelivered_queue_ids(conn, sender, mta)

    def messages(self, sender: str, since: float = 0.0,
                 until: float | None = None) -> list[StoredMessage]:
        """The sender's messages in [since, until], each recipient with its last
        outcome (a delivery without its remote reply), oldest first.

        Outcomes recorded for queue ids whose submission was never seen appear as
        messages of their own (envelope details empty).
        """
        with self._db.read() as conn:
            return messagereads.messages(conn, sender, since, until)

    def outcomes_recorded(self, mta: str, queue_id: str) -> set[tuple[str, str, float]]:
        """(recipient, status, log time to the millisecond) of each recipient's last
        outcome stored for one message: what a log read again after a crash must not
        record twice."""
        with self._db.read() as conn:
            return messagereads.outcomes_recorded(conn, mta, queue_id)

    def counters(self, sender: str, name: str, since: float = 0.0) -> dict[int, float]:
        """{bucket start: value} of one counter from `since` on."""
        with self._db.read() as conn:
            return messagereads.counters(conn, sender, name, since)

    def save_failure_windows(self, mta: str, snapshots: list[failwindow.Snapshot],
                             prune_before: float | None = None) -> None:
        """This host's failure windows (scoring/failwindow.py), and its stale rows gone."""
        with self._db.write() as conn:
            failwindow.save(conn, self.dialect, mta, snapshots)
            if prune_before is not None:
                failwindow.prune(conn, mta, prune_before)

    def others_failures(self, mta: str, since: float) -> list[tuple[str, int, int, float]]:
        """The other hosts' failure windows taken since `since` (scoring/failwindow.py)."""
        with self._db.read() as conn:
            return failwindow.others(conn, mta, since)

    def others_use(self, mta: str, now: float, recent_seconds: float
                   ) -> dict[str, OthersUse]:
        """What hosts other than `mta` let each restricted sender send in the last hour,
        day and `recent_seconds` (scoring/shared.py): one grouped query per refresh."""
        with self._db.read() as conn:
            return reads.others_use(conn, mta, now, recent_seconds)

    def baselines(self, limit: int) -> dict[str, dict[str, Any]]:
        """The `limit` most recently updated baselines, sender key -> stored form."""
        with self._db.read() as conn:
            return reads.baselines(conn, limit)

    def report_totals(self, since: float | None, until: float,
                      keys: Sequence[str] | None = None, *,
                      per_hour_for: Sequence[str] = ()) -> dict[str, SenderTotals]:
        """Per sender in the window (`keys` None: every sender): messages, recipients,
        outcomes, hours and blocks active; outcomes per hour only for `per_hour_for`."""
        with self._db.read() as conn:
            return reportreads.totals(conn, self.dialect, since, until, keys,
                                      per_hour_for=per_hour_for)

    def listed_messages(self, sender: str, since: float | None, until: float, limit: int
                        ) -> list[tuple[ListedMessage, list[RecipientHistory]]]:
        """The sender's most recent `limit` messages (0: all) in the window, oldest first,
        each with its recipients' rows in the order they were written."""
        with self._db.read() as conn:
            return reportreads.listed_messages(conn, sender, since, until, limit)

    def get_checkpoint(self, name: str) -> Position | None:
        """Where follower `name` stopped, or None."""
        with self._db.read() as conn:
            return reads.checkpoint(conn, name)


def open_store(cfg: Any) -> Store:
    """A Store for a loaded `extrusion.config.Config`."""
    return Store(cfg.store.url, busy_timeout_ms=cfg.store.busy_timeout_ms)
