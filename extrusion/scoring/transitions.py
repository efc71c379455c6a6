"""A sender's state from its score, probation and pins, and the record of each move.

Functions over the engine's memory (`book.SenderBook`, seen here through the
small `Judged` protocol, so this module needs nothing of the book's own):
`evaluate()` runs after every event, so its common case computes no decay.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from extrusion.scoring import decisions as answer
from extrusion.scoring.attention import AttentionIndex
from extrusion.scoring.audit import ENGINE
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.judge import Judge
from extrusion.scoring.kinds import Kind
from extrusion.scoring.memory import SenderMemory, copy_findings
from extrusion.scoring.pins import pin_of, pin_reason
from extrusion.scoring.rows import Batch
from extrusion.scoring.state import PIN_STATES, Thresholds, next_state
from extrusion.scoring.writes import state_change_row

_OK = State.OK  # read after every event: a member read from its enum class is a lookup


class Judged(Protocol):
    """What a transition reads and writes of the engine's memory."""

    thresholds: Thresholds
    judge: Judge
    half_life: float
    batch: Batch
    changes: deque[StateChange]
    attention: AttentionIndex

    def touch(self, mem: SenderMemory) -> None: ...


def settled(mem: SenderMemory, watch: float) -> bool:
    """Whether `mem` stays `ok` whatever the clock says: unpinned, not on probation, and
    a score that cannot reach `watch`. The common case after every event, answered
    without computing any decay."""
    if mem.state is not _OK or mem.probation is not None:
        return False
    # Most senders have no evidence and no pin: answered from their attributes, without
    # the two calls (score_bound(), pin_of()) that ask the same for every other sender.
    if not ((mem.base <= 0.0 and mem.pending <= 0.0 and watch > 0.0)
            or mem.score_bound() < watch):
        return False
    return (not mem.pin and mem.config_pin is None) or pin_of(mem) not in PIN_STATES


def target(book: Judged, mem: SenderMemory, now: float) -> State:
    """The state `mem` belongs in now."""
    if settled(mem, book.thresholds.watch):
        return State.OK
    pin = pin_of(mem)
    if pin in PIN_STATES:
        return PIN_STATES[pin]
    if mem.probation is not None:
        book.judge.probation.expire(mem, now)
    # A `watch` that only the probation put it in falls back without hysteresis.
    current = State.OK if mem.by_probation and mem.state is State.WATCH else mem.state
    score = mem.score(now, book.half_life)
    if current is State.OK and score < book.thresholds.watch:
        result = State.OK  # without walking the thresholds
    else:
        result = next_state(current, score, book.thresholds)
    if mem.probation is not None and result is State.OK:
        return State.WATCH
    return result


def evaluate(book: Judged, mem: SenderMemory, now: float) -> StateChange | None:
    """Move `mem` to the state it belongs in, if it is not there; the change or None."""
    new = target(book, mem, now)
    if new is mem.state:
        return None
    pin = pin_of(mem)
    if pin in PIN_STATES:
        who = (mem.pinned_by or "operator") if mem.pin else "config"
        reason = pin_reason(mem, pin)
    elif new is State.WATCH and mem.probation is not None and not mem.state.rank:
        who, reason = ENGINE, f"{Kind.PROBATION}: {mem.probation.reason}"
    elif new.rank > mem.state.rank:
        who, reason = ENGINE, answer.phrase(mem.top_finding())
    elif mem.by_probation and mem.probation_end:
        who, reason = ENGINE, mem.probation_end
    else:
        who, reason = ENGINE, "evidence decayed"
    return transition(book, mem, mem.state, new, now, reason, who)


def transition(book: Judged, mem: SenderMemory, old: State, new: State, now: float,
               reason: str, who: str) -> StateChange:
    """Record a state change (or an operator's action on an unchanged state)."""
    score = round(mem.score(now, book.half_life), 3)
    change = StateChange(
        time=now, sender=mem.key, old=old, new=new, score=score, reason=reason, who=who,
        evidence={"score": score, "findings": copy_findings(mem.findings),
                  "failed_recipients": mem.failed.count(now)},
    )
    if new is not old:
        mem.state_since = now
    mem.by_probation = new is State.WATCH and mem.probation is not None
    mem.probation_end = ""
    mem.state = new
    mem.reason = reason
    mem.state_dirty = True
    book.touch(mem)
    book.attention.note(mem)
    book.batch.state_changes.append(state_change_row(change))
    if old is not new:
        book.changes.append(change)
    return change
