"""Taking the store's word about a sender: after this process's flush, or another's write.

The store's row brings the summed score, a state another process set
(listeners hear of it, it is not audited twice), a pin, or a release that
clears this process's evidence windows.
"""

from __future__ import annotations

from extrusion.scoring.audit import ENGINE
from extrusion.scoring.book import NEGLIGIBLE_SCORE, SenderBook
from extrusion.scoring.decisions import phrase
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.memory import RELEASED, SenderMemory, copy_findings, tallies
from extrusion.scoring.rows import SenderRow
from extrusion.scoring.transitions import evaluate


def adopt(book: SenderBook, row: SenderRow, now: float, *, create: bool) -> None:
    """Take what the store says about a sender (call with the book's lock)."""
    mem = book.senders.get(row.key)
    if mem is None:
        if not create or not worth_remembering(row, now, book.half_life):
            return
        mem = _remember(book, row)
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
    _follow_state(book, mem, row, now)
    evaluate(book, mem, now)
    # The store's state, or a release elsewhere that ended its probation, moved it
    # without a transition of this engine's.
    book.attention.note(mem)


def _remember(book: SenderBook, row: SenderRow) -> SenderMemory:
    """A sender first known from the store."""
    mem = SenderMemory(row.key, row.first_seen, book.window, row.cls)
    book.judge.set_windows(mem)
    if (kept := book.baselines.take(row.key)) is not None:
        mem.baseline = kept
    mem.state = State(row.state)
    mem.state_since = row.state_since
    mem.last_seen = max(row.last_seen, row.first_seen)  # its place for the cap
    book.senders[row.key] = mem
    book.classify(mem)
    book.dirty.discard(row.key)
    mem.dirty = False
    return mem


def _follow_state(book: SenderBook, mem: SenderMemory, row: SenderRow, now: float) -> None:
    stored = State(row.state)
    if mem.state_dirty or stored is mem.state:
        return
    # Another process moved this sender (and audited it): follow, tell listeners.
    change = StateChange(time=now, sender=row.key, old=mem.state, new=stored,
                         score=round(row.score_at(now, book.half_life), 3),
                         reason="changed by another process", who=ENGINE)
    mem.state, mem.state_since = stored, row.state_since
    # Not this engine's reason for the old state: the evidence's own phrase (a pin
    # is phrased in the operator's words when a decision quotes it).
    mem.reason = phrase(mem.top_finding())
    book.changes.append(change)


def worth_remembering(row: SenderRow, now: float, half_life: float) -> bool:
    return (row.state != State.OK.value or row.pinned is not None
            or row.score_at(now, half_life) >= NEGLIGIBLE_SCORE)
