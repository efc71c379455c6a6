"""An operator's action on the running engine: pin a state, or release a sender.

The request was checked already (operator.py, shared with the CLI); here it
lands in memory at once, its pin queued for the store, and its state change
recorded in the operator's words.
"""

from __future__ import annotations

from extrusion.scoring.book import SenderBook
from extrusion.scoring.events import OperatorAction, OperatorVerb, State, StateChange
from extrusion.scoring.rows import PIN_CLEAR, PIN_SET
from extrusion.scoring.transitions import target, transition


class OperatorActions:
    """`EngineAPI.operator()` over the book."""

    def __init__(self, book: SenderBook) -> None:
        self.book = book

    def apply(self, event: OperatorAction) -> StateChange | None:
        book = self.book
        now = event.time
        verb = OperatorVerb(event.verb)
        with book.lock:
            # Raises SenderKeyError before anything is remembered or written.
            mem = book.mem(book.map.operator_key(event.sender), now)
            old = mem.state
            if verb is OperatorVerb.RELEASE:
                mem.forget(now, event.who)
                mem.pin = mem.pinned_by = mem.pinned_reason = None
                mem.pin_dirty = PIN_CLEAR
                mem.state = State.OK  # released: back to the start, evidence forgotten
            else:
                mem.pin, mem.pinned_by, mem.pinned_reason = verb.value, event.who, event.why
                mem.pin_dirty = PIN_SET
            book.touch(mem)
            reason = f"{verb.value} by {event.who}: {event.why}"
            new = target(book, mem, now)
            change = transition(book, mem, old, new, now, reason, event.who)
        book.dispatch()
        return change
