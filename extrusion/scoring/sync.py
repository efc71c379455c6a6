"""The engine's side of the store: batched writes, the spool, and pulling others' changes.

`write_out()` moves each changed sender's news into the batch and writes the
batch in one transaction; while the store is unreachable the batch goes to
the local spool (or stays in memory if even that fails) and spooled batches
are written first, in order, once the store answers again. `refresh()` and
the rows a flush returns bring in what other processes wrote (adopt.py).
"""

from __future__ import annotations

import logging
import threading

from extrusion.scoring.adopt import adopt
from extrusion.scoring.audit import ENGINE
from extrusion.scoring.book import NEGLIGIBLE_SCORE, SenderBook
from extrusion.scoring.memory import copy_findings, news, tallies
from extrusion.scoring.others import SharedWindows
from extrusion.scoring.quarantine import PartlyWritten, Quarantine, write_in_parts
from extrusion.scoring.rows import Batch, SenderDelta, SenderRow, decay
from extrusion.scoring.spool import Spool, SpoolError
from extrusion.scoring.store import Store
from extrusion.scoring.tracker import MessageInfo

log = logging.getLogger("extrusion.scoring")

# A start loads no `ok`, unpinned sender whose score is older than this many half-lives:
# 2^-64 of any score below 10^17 is below NEGLIGIBLE_SCORE, so none of them would
# be kept (`adopt.worth_remembering`); leaving them to the database saves the most of
# a start on a big store (benchmarks/scale.py).
QUIET_HALF_LIVES = 64

__all__ = ["ENGINE", "NEGLIGIBLE_SCORE", "QUIET_HALF_LIVES", "StoreSync"]


class StoreHealth:
    """Whether the store answered last time, and what it said when it did not."""

    def __init__(self) -> None:
        self.ok = True
        self.last_error = ""

    def failed(self, what: str, exc: Exception) -> None:
        self.last_error = f"{what}: {exc}"
        if self.ok:
            log.error("store unavailable (%s: %s); answering from memory, spooling writes",
                      what, exc)
        self.ok = False

    def back(self) -> None:
        if not self.ok:
            log.warning("store available again")
        self.ok = True


class StoreSync:
    """Everything the engine says to the store or the spool, and hears back."""

    def __init__(self, book: SenderBook, store: Store, spool: Spool,
                 quarantine: Quarantine) -> None:
        self.book = book
        self.store = store
        self.spool = spool
        self.quarantine = quarantine
        self.flush_lock = threading.Lock()  # one flush or refresh at a time
        self.health = StoreHealth()
        # The health's method, not this object's: no reference cycle through `others`.
        self.store_failed = self.health.failed
        self._store_back = self.health.back
        self.others = SharedWindows(book, store, self.health.failed)
        self._mark: float | None = None
        self._schema_ok = False

    def load(self) -> None:
        """Senders worth remembering from the store (best effort: the store may be down)."""
        book = self.book
        try:
            self._ensure_schema()
            rows, mark = self.store.changed_senders(
                None, quiet_before=book.clock() - QUIET_HALF_LIVES * book.half_life)
            stored_baselines = self.store.baselines(book.baselines.limit)
        except Exception as exc:  # store down at start: answer from memory, retry later
            self.store_failed("loading senders", exc)
            return
        now = book.clock()
        with book.lock:
            book.baselines.load(stored_baselines)
            for row in rows:
                adopt(book, row, now, create=True)
            self._mark = mark
            if book.cap.due(len(book.senders)):
                book.forget_least_recent()  # a big store: keep the most recently active
        book.dispatch()

    def lookup_message(self, mta: str, queue_id: str) -> MessageInfo | None:
        """The submission another process recorded (store round trip; not on the MTA's path)."""
        if not queue_id:
            return None  # a rejection before queueing (NOQUEUE): no message was recorded
        try:
            rec = self.store.message(queue_id, mta)
        except Exception as exc:
            self.store_failed("looking up a queue id", exc)
            return None
        if rec is None:
            return None
        book = self.book
        info = MessageInfo.from_record(rec, book.judge.list_candidate(rec.rcpt_count)
                                       and not rec.null_sender)
        with book.lock:
            known = book.messages.get(mta, queue_id)
            if known is not None:
                return known
            for old in book.messages.add(info):
                book.settle_forgotten(old, book.clock())
        return info

    def write_out(self, now: float) -> None:
        """The flush's store side (call with `flush_lock`): the batch written or spooled."""
        book = self.book
        with book.lock:
            if now >= book.next_housekeeping:
                book.housekeeping(now)
            self._collect_deltas()
            batch, book.batch = book.batch, Batch()
        if not self._replay_spool():
            self._spool(batch)
            return
        if not len(batch):
            return
        try:
            rows = self._write(batch)
        except PartlyWritten as exc:
            self.store_failed("writing events", exc)
            self._spool(exc.remainder)
            return
        except Exception as exc:
            self.store_failed("writing events", exc)
            self._spool(batch)
            return
        self._store_back()
        with book.lock:
            for row in rows:
                adopt(book, row, now, create=False)
        self._save_baselines(now)
        book.after_flush()
        self._refresh_others_if_busy(batch, now)
        self.others.share_failures(now)

    def _save_baselines(self, now: float) -> None:
        """The changed baselines, once the store has taken the batch; kept for the next
        flush when it fails (a baseline is a summary: the latest form is all it needs)."""
        book = self.book
        with book.lock:
            pending = book.baselines.drain()
        if not pending or not book.keeps_rows:
            return  # (a replay's throw-away store: read only at a start, never again)
        try:
            self.store.save_baselines(pending, now)
        except Exception as exc:
            with book.lock:
                book.baselines.restore(pending)
            self.store_failed("writing baselines", exc)

    def _refresh_others_if_busy(self, batch: Batch, now: float) -> None:
        """Shared budgets (shared.py): the other hosts' use of restricted senders."""
        if self.book.config.store.shared_limits and (batch.rate_use or self.others.shared):
            # A restricted sender busy here or elsewhere: the others' share every flush
            # (about a second), not only every refresh, keeps the overshoot small.
            self.others.refresh_use(now)

    def _collect_deltas(self) -> None:
        """Move every dirty sender's news into the batch (its pending score becomes base)."""
        book = self.book
        half_life = book.half_life
        for key in book.dirty:
            mem = book.senders.get(key)
            if mem is None:
                continue
            t = max(mem.pending_time, mem.last_seen)
            d = SenderDelta(
                key=key, time=t, score_delta=decay(mem.pending, t - mem.pending_time,
                                                   half_life),
                cls=mem.cls, first_seen=mem.first_seen, reset_score=mem.reset,
            )
            if mem.state_dirty:
                d.state, d.state_since = mem.state.value, mem.state_since
            if mem.findings_dirty:
                d.findings = copy_findings(mem.findings)
                if not mem.reset:  # a release replaces the stored findings: nothing to add
                    d.added = news(mem.findings, mem.written)
                mem.written = tallies(mem.findings)
            if mem.pin_dirty is not None:
                d.pin, d.pinned = mem.pin_dirty, mem.pin
                d.pinned_by, d.pinned_reason = mem.pinned_by, mem.pinned_reason
            book.batch.add_sender(d, half_life)
            if book.keeps_rows and (baseline := mem.made("baseline")) is not None:
                book.baselines.collect(key, baseline)
            mem.base = mem.score(t, half_life)
            mem.base_time = t
            mem.pending, mem.pending_time = 0.0, t
            mem.dirty = mem.state_dirty = mem.findings_dirty = mem.reset = False
            mem.pin_dirty = None
        book.dirty.clear()

    def refresh(self, now: float) -> None:
        """What other processes wrote since the last refresh (the caller dispatches)."""
        book = self.book
        with self.flush_lock:
            try:
                self._ensure_schema()
                rows, mark = self._changed_rows()
            except Exception as exc:
                self.store_failed("refreshing senders", exc)
                return
            self._store_back()
            with book.lock:
                for row in rows:
                    adopt(book, row, now, create=True)
                self._mark = mark
            book.after_flush()  # what others wrote counts against the cap too
            if book.config.store.shared_limits:
                self.others.refresh_use(now)
            if book.config.store.shared_failures:
                self.others.refresh_failures(now)

    def _changed_rows(self) -> tuple[list[SenderRow], float]:
        """The rows changed since the last refresh that `adopt` would take: most are
        this process's own flushes, already adopted at that version, so only the keys
        and versions are read for every row and the whole row only for a sender not in
        memory or stored at a newer version (`adopt` skips the others unread)."""
        versions, mark = self.store.changed_versions(self._mark)
        book = self.book
        with book.lock:
            senders = book.senders
            wanted = [k for k, v in versions
                      if (mem := senders.get(k)) is None or v > mem.version]
        return (self.store.senders_keyed(wanted) if wanted else []), mark

    def _ensure_schema(self) -> None:
        if not self._schema_ok:
            self.store.upgrade()
            self._schema_ok = True

    def _replay_spool(self) -> bool:
        """Write spooled batches first (order matters); False while the store is down."""
        try:
            self._ensure_schema()
            if not self.spool.files():
                return True
            replayed = self.spool.replay(self._write_replayed)
        except Exception as exc:
            self.store_failed("replaying the spool", exc)
            return False
        if replayed:
            log.warning("store reachable again: %d spooled batches written", replayed)
        self._store_back()
        return True

    def _write(self, batch: Batch) -> list[SenderRow]:
        """One batch into the store; rows it refuses are set aside, never retried."""
        half_life = self.book.half_life
        return write_in_parts(lambda b: self.store.write_batch(b, half_life), batch,
                              self.quarantine)

    def _write_replayed(self, batch: Batch) -> None:
        rows = self._write(batch)  # PartlyWritten: the spool keeps only the remainder
        book = self.book
        now = book.clock()
        with book.lock:
            for row in rows:
                adopt(book, row, now, create=False)

    def _spool(self, batch: Batch) -> None:
        if not len(batch):
            return
        try:
            self.spool.write(batch)
        except SpoolError as exc:
            # Not even the disk: keep it in memory and try both again next time.
            log.error("%s; keeping %d writes in memory", exc, len(batch))
            with self.book.lock:
                _merge_batches(self.book.batch, batch, self.book.half_life)

    @property
    def store_ok(self) -> bool:
        return self.health.ok

    @property
    def last_store_error(self) -> str:
        return self.health.last_error


def _merge_batches(into: Batch, other: Batch, half_life: float) -> None:
    into.messages[:0] = other.messages
    into.recipients[:0] = other.recipients
    into.message_rows[:0] = other.message_rows
    into.recipient_rows[:0] = other.recipient_rows
    for k, v in other.counters.items():
        into.counters[k] = into.counters.get(k, 0.0) + v
    for (s, m, b), (r, n) in other.rate_use.items():
        into.add_use(s, m, b, r, n)
    into.state_changes[:0] = other.state_changes
    for delta in other.senders.values():
        if (mine := into.senders.get(delta.key)) is None:
            into.senders[delta.key] = delta
        else:
            delta.absorb(mine, half_life)
            into.senders[delta.key] = delta
