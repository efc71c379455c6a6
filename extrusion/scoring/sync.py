"""The engine's side of the store: batched writes, the spool, and pulling others' changes.

`flush()` moves each changed sender's news into the batch and writes the
batch in one transaction; while the store is unreachable the batch goes to
the local spool (or stays in memory if even that fails) and spooled batches
are written first, in order, once the store answers again. `refresh()` and
the rows a flush returns bring in what other processes wrote: the summed
score, a state another process set (listeners hear of it, it is not audited
twice), a pin, or a release that clears this process's evidence windows.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from extrusion.scoring import others
from extrusion.scoring.baseline import Baselines
from extrusion.scoring.decisions import phrase
from extrusion.scoring.events import Outcome, State, StateChange
from extrusion.scoring.failwindow import FailureShare
from extrusion.scoring.judge import Judge
from extrusion.scoring.memory import RELEASED, SenderMemory, copy_findings, news, tallies
from extrusion.scoring.quarantine import PartlyWritten, Quarantine, write_in_parts
from extrusion.scoring.rows import Batch, SenderDelta, SenderRow, decay
from extrusion.scoring.settings import EngineSettings
from extrusion.scoring.spool import Spool, SpoolError
from extrusion.scoring.store import Store
from extrusion.scoring.tracker import MessageInfo, MessageTracker

log = logging.getLogger("extrusion.scoring")

# An outcome whose queue id no process has recorded yet is retried this long.
UNRESOLVED_RETRY_SECONDS = 300.0
# A sender whose score fell below this, idle and unpinned, is forgotten from memory.
NEGLIGIBLE_SCORE = 0.01
# A start loads no `ok`, unpinned sender whose score is older than this many half-lives:
# 2^-64 of any score below 10^17 is below NEGLIGIBLE_SCORE, so none of them would
# be kept (`_worth_remembering`); leaving them to the database saves the most of a
# start on a big store (benchmarks/scale.py).
QUIET_HALF_LIVES = 64
ENGINE = "engine"


class StoreSync:
    """Mixed into `Engine`: everything that talks to the store or the spool."""

    store: Store
    spool: Spool
    quarantine: Quarantine
    clock: Callable[[], float]
    half_life: float
    window: float
    mta: str
    judge: Judge
    store_ok: bool
    last_store_error: str
    _lock: threading.RLock
    _flush_lock: threading.Lock
    _senders: dict[str, SenderMemory]
    _dirty: set[str]
    _batch: Batch
    _messages: MessageTracker
    _unresolved: deque[tuple[float, Outcome]]
    _changes: deque[StateChange]
    _mark: float | None
    _schema_ok: bool
    _shared: set[str]  # senders whose budgets count other hosts' use
    _failures: FailureShare  # senders whose failure windows count other hosts'
    config: EngineSettings
    _next_housekeeping: float
    _baselines: Baselines

    if TYPE_CHECKING:  # provided by Engine
        def _housekeeping(self, now: float) -> None: ...
        def _after_flush(self) -> None: ...
        def _dispatch(self) -> None: ...
        def _evaluate(self, mem: SenderMemory, now: float) -> StateChange | None: ...
        def _classify_sender(self, mem: SenderMemory) -> None: ...
        def _settle_forgotten(self, info: MessageInfo, now: float) -> None: ...
        def _record_outcome(self, event: Outcome, mta: str, info: MessageInfo | None,
                            sender: str) -> None: ...

    def _lookup_message(self, mta: str, queue_id: str) -> MessageInfo | None:
        """The submission another process recorded (store round trip; not on the MTA's path)."""
        if not queue_id:
            return None  # a rejection before queueing (NOQUEUE): no message was recorded
        try:
            rec = self.store.message(queue_id, mta)
        except Exception as exc:
            self._store_failed("looking up a queue id", exc)
            return None
        if rec is None:
            return None
        info = MessageInfo.from_record(rec, self.judge.list_candidate(rec.rcpt_count)
                                       and not rec.null_sender)
        with self._lock:
            known = self._messages.get(mta, queue_id)
            if known is not None:
                return known
            for old in self._messages.add(info):
                self._settle_forgotten(old, self.clock())
        return info

    def flush(self) -> None:
        with self._flush_lock:
            self._flush()
        self._dispatch()

    def _flush(self) -> None:
        now = self.clock()
        self._retry_unresolved(now)
        with self._lock:
            if now >= self._next_housekeeping:
                self._housekeeping(now)
            self._collect_deltas()
            batch, self._batch = self._batch, Batch()
        if not self._replay_spool():
            self._spool(batch)
            return
        if not len(batch):
            return
        try:
            rows = self._write(batch)
        except PartlyWritten as exc:
            self._store_failed("writing events", exc)
            self._spool(exc.remainder)
            return
        except Exception as exc:
            self._store_failed("writing events", exc)
            self._spool(batch)
            return
        self._store_back()
        with self._lock:
            for row in rows:
                self._adopt(row, now, create=False)
        self._save_baselines(now)
        self._after_flush()
        self._refresh_others_if_busy(batch, now)
        others.share_failures(self, now)

    def _save_baselines(self, now: float) -> None:
        """The changed baselines, once the store has taken the batch; kept for the next
        flush when it fails (a baseline is a summary: the latest form is all it needs)."""
        with self._lock:
            pending = self._baselines.drain()
        if not pending:
            return
        try:
            self.store.save_baselines(pending, now)
        except Exception as exc:
            with self._lock:
                self._baselines.restore(pending)
            self._store_failed("writing baselines", exc)

    def _refresh_others_if_busy(self, batch: Batch, now: float) -> None:
        """Shared budgets (shared.py): the other hosts' use of restricted senders."""
        if self.config.store.shared_limits and (batch.rate_use or self._shared):
            # A restricted sender busy here or elsewhere: the others' share every flush
            # (about a second), not only every refresh, keeps the overshoot small.
            others.refresh_use(self, now)

    def _collect_deltas(self) -> None:
        """Move every dirty sender's news into the batch (its pending score becomes base)."""
        for key in self._dirty:
            mem = self._senders.get(key)
            if mem is None:
                continue
            t = max(mem.pending_time, mem.last_seen)
            d = SenderDelta(
                key=key, time=t, score_delta=decay(mem.pending, t - mem.pending_time,
                                                   self.half_life),
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
            self._batch.add_sender(d, self.half_life)
            self._baselines.collect(key, mem.baseline)
            mem.base = mem.score(t, self.half_life)
            mem.base_time = t
            mem.pending, mem.pending_time = 0.0, t
            mem.dirty = mem.state_dirty = mem.findings_dirty = mem.reset = False
            mem.pin_dirty = None
        self._dirty.clear()

    def _adopt(self, row: SenderRow, now: float, *, create: bool) -> None:
        """Take what the store says about a sender (after our flush, or another's write)."""
        mem = self._senders.get(row.key)
        if mem is None:
            if not create or not _worth_remembering(row, now, self.half_life):
                return
            mem = SenderMemory(row.key, row.first_seen, self.window, row.cls)
            self.judge.set_windows(mem)
            mem.baseline = self._baselines.take(row.key)
            mem.state = State(row.state)
            mem.state_since = row.state_since
            mem.last_seen = max(row.last_seen, row.first_seen)  # its place for the cap
            self._senders[row.key] = mem
            self._classify_sender(mem)
            self._dirty.discard(row.key)
            mem.dirty = False
        elif row.version <= mem.version:
            return
        # Its first word from the store: the stored findings now include its own.
        first = mem.version == 0
        mem.version = row.version
        mem.base, mem.base_time = row.score, row.score_time
        if mem.pin_dirty is None:
            mem.pin, mem.pinned_by, mem.pinned_reason = (
                row.pinned, row.pinned_by, row.pinned_reason)
        released = row.findings.get(RELEASED) if isinstance(row.findings, dict) else None
        if isinstance(released, dict) and float(released.get("time", 0.0)) > mem.released_at:
            # Released elsewhere (CLI, another MTA): this process's windows go too.
            mem.forget_locally(now, row.findings)
            mem.base, mem.base_time = row.score, row.score_time
        elif not mem.findings_dirty and row.findings and (first or not mem.findings):
            # Nothing of ours unwritten: the store's merged view, all hosts' notes in it.
            mem.findings = copy_findings(row.findings)
            mem.written = tallies(mem.findings)
        stored = State(row.state)
        if not mem.state_dirty and stored is not mem.state:
            # Another process moved this sender (and audited it): follow, tell listeners.
            change = StateChange(time=now, sender=row.key, old=mem.state, new=stored,
                                 score=round(row.score_at(now, self.half_life), 3),
                                 reason="changed by another process", who=ENGINE)
            mem.state, mem.state_since = stored, row.state_since
            # Not this engine's reason for the old state: the evidence's own phrase (a pin
            # is phrased in the operator's words when a decision quotes it).
            mem.reason = phrase(mem.top_finding())
            self._changes.append(change)
        self._evaluate(mem, now)

    def refresh(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        with self._flush_lock:
            try:
                self._ensure_schema()
                rows, mark = self.store.changed_senders(self._mark)
            except Exception as exc:
                self._store_failed("refreshing senders", exc)
                return
            self._store_back()
            with self._lock:
                for row in rows:
                    self._adopt(row, now, create=True)
                self._mark = mark
            self._after_flush()  # what others wrote counts against the cap too
            if self.config.store.shared_limits:
                others.refresh_use(self, now)
            if self.config.store.shared_failures:
                others.refresh_failures(self, now)
        self._dispatch()

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
            self._store_failed("replaying the spool", exc)
            return False
        if replayed:
            log.warning("store reachable again: %d spooled batches written", replayed)
        self._store_back()
        return True

    def _write(self, batch: Batch) -> list[SenderRow]:
        """One batch into the store; rows it refuses are set aside, never retried."""
        return write_in_parts(lambda b: self.store.write_batch(b, self.half_life), batch,
                              self.quarantine)

    def _write_replayed(self, batch: Batch) -> None:
        rows = self._write(batch)  # PartlyWritten: the spool keeps only the remainder
        now = self.clock()
        with self._lock:
            for row in rows:
                self._adopt(row, now, create=False)

    def _spool(self, batch: Batch) -> None:
        if not len(batch):
            return
        try:
            self.spool.write(batch)
        except SpoolError as exc:
            # Not even the disk: keep it in memory and try both again next time.
            log.error("%s; keeping %d writes in memory", exc, len(batch))
            with self._lock:
                _merge_batches(self._batch, batch, self.half_life)

    def _store_failed(self, what: str, exc: Exception) -> None:
        self.last_store_error = f"{what}: {exc}"
        if self.store_ok:
            log.error("store unavailable (%s: %s); answering from memory, spooling writes",
                      what, exc)
        self.store_ok = False

    def _store_back(self) -> None:
        if not self.store_ok:
            log.warning("store available again")
        self.store_ok = True

    def unresolved_outcomes(self) -> list[Outcome]:
        """The outcomes still waiting for their message's submission: only in memory, so a
        log follower keeps its checkpoint before their lines (maillog/recovery.py)."""
        with self._lock:
            return [event for _since, event in self._unresolved]

    def _retry_unresolved(self, now: float) -> None:
        """Outcomes whose submission was not known yet: look again, or record them as such."""
        with self._lock:
            pending, self._unresolved = self._unresolved, deque()
        for since, event in pending:
            mta = event.mta or self.mta
            with self._lock:
                info = self._messages.get(mta, event.queue_id)
            if info is None and self.store_ok:
                info = self._lookup_message(mta, event.queue_id)
            if info is not None:
                self._record_outcome(event, mta, info, info.sender)
            elif now - since < UNRESOLVED_RETRY_SECONDS or not self.store_ok:
                # Keep asking (and never give up while the store cannot even be asked).
                with self._lock:
                    self._unresolved.append((since, event))
            else:
                self._record_outcome(event, mta, None, "")


def _worth_remembering(row: SenderRow, now: float, half_life: float) -> bool:
    return (row.state != State.OK.value or row.pinned is not None
            or row.score_at(now, half_life) >= NEGLIGIBLE_SCORE)

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
