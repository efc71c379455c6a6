"""The delivery fast path (`outcomefast.FastOutcome.outcome`) records as the general path.

Two books built alike from one drawn case are fed the same outcomes, one through
`outcome()` (the fast path, falling back to the general one) and one through
`general()` alone; after every outcome both must hold the same senders (every
slot, the evidence windows' expiry order included), messages, rows, dirty set,
state changes, notices and shared failure snapshots. The cases vary what the
fast path's precondition reads (state, probation, pins, score against `watch`,
list verdict, bounces and auto-replies, unknown messages and senders, rows kept
or not, shared failures on or off) and step log times back and forth across the
edge of a short evidence window, where a skipped expiry would show.
"""

from __future__ import annotations

import dataclasses
import math
from enum import Enum
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from extrusion.config import Config
from extrusion.config.judging import Override
from extrusion.scoring import judge, outcomefast
from extrusion.scoring.book import SenderBook
from extrusion.scoring.events import Outcome, State, Status
from extrusion.scoring.failwindow import FailureShare
from extrusion.scoring.limits import SlidingCounter
from extrusion.scoring.outcomes import Outcomes
from extrusion.scoring.probation import BUCKET, ProbationState
from extrusion.scoring.tracker import MessageInfo

WINDOW = 10.0  # seconds: log times drawn from 0..30 cross its edge often
RCPTS = ["a@x.example", "A@x.example", "b@x.example", "c@y.example"]
SENDERS = ["s1", "s2"]
QUEUE_IDS = ["q1", "q2", "q3"]  # q3 is never submitted
SCORES = [0.0, -1.0, 0.5, 9.99, 10.0, 30.0, math.nan]


class _Others:
    def __init__(self) -> None:
        self.failures = FailureShare()


class _Sync:
    """What `Outcomes` asks of the store's side: no store here."""

    store_ok = False

    def __init__(self) -> None:
        self.others = _Others()


def _config(shared: bool, shared_from: int) -> Config:
    c = Config()
    return dataclasses.replace(
        c, scoring=dataclasses.replace(c.scoring, window_seconds=WINDOW),
        store=dataclasses.replace(c.store, shared_failures=shared,
                                  shared_failures_from=shared_from))

def mostly(common: Any, *others: Any) -> st.SearchStrategy[Any]:
    """`common` nine times in ten: the fast path's case must come up often."""
    return st.sampled_from([common] * 9 * max(len(others), 1) + list(others))


sender_states = st.fixed_dictionaries({
    "state": mostly(State.OK, State.WATCH, State.THROTTLED),
    "probation": mostly(None, 0, 1, 2),  # delivered recipients so far
    "pin": mostly(None, "", "block", "allow"),
    "config_pin": mostly(None, "hold", "limits"),
    "base": st.sampled_from(SCORES), "pending": mostly(0.0, *SCORES),
    "dirty": st.booleans(), "written": st.booleans(),
    "attempted": st.lists(st.tuples(st.sampled_from(RCPTS), st.integers(0, 30)), max_size=5),
    "failed": st.lists(st.tuples(st.sampled_from(RCPTS), st.integers(0, 30)), max_size=5),
})
messages = st.fixed_dictionaries({
    "sender": st.sampled_from(SENDERS), "rcpt_count": st.integers(0, 3),
    "list_like": mostly(False, True, None),
    "null_sender": mostly(False, True), "auto_reply": mostly(False, True),
})
events = st.lists(st.tuples(
    st.integers(0, 30), mostly("q1", "q2", "q3"), st.sampled_from(RCPTS),
    mostly(Status.SENT, *Status), mostly("", "s1", "s2", "s3"), mostly("", "mx1", "mx2"),
), min_size=1, max_size=8)
cases = st.fixed_dictionaries({
    "senders": st.lists(sender_states, min_size=1, max_size=2),
    "messages": st.lists(messages, min_size=2, max_size=2),
    "events": events, "keeps_rows": st.booleans(), "whole": st.booleans(),
    "shared": st.booleans(), "shared_from": st.integers(1, 3),
    "cap": st.sampled_from([judge.MAX_ATTEMPTED, 2]),  # attempted recipients kept at most
})


def _sender(book: SenderBook, failures: FailureShare, key: str, s: dict[str, Any]) -> None:
    mem = book.mem(key, 0.0)
    for rcpt, t in s["attempted"]:
        mem.attempted.add(rcpt, float(t))
    for rcpt, t in s["failed"]:
        mem.failed.add(rcpt, float(t))
    mem.state, mem.pin, mem.base, mem.pending = s["state"], s["pin"], s["base"], s["pending"]
    if s["config_pin"] is not None:
        mem.config_pin = Override(match=key, action=s["config_pin"])
    if s["probation"] is not None:
        mem.probation = ProbationState(0.0, "test", SlidingCounter(600.0, BUCKET),
                                       set(RCPTS[2:2 + s["probation"]]))
    mem.dirty = s["dirty"]
    if s["written"]:
        failures.written.add(key)


def build(case: dict[str, Any]) -> tuple[SenderBook, Outcomes, list[int]]:
    book = SenderBook(_config(case["shared"], case["shared_from"]), lambda: 0.0)
    book.mta = "mx1"
    book.keeps_rows = case["keeps_rows"]
    calls = [0]

    def after_record() -> None:
        calls[0] += 1

    outcomes = Outcomes(book, _Sync(), after_record)  # type: ignore[arg-type]
    outcomes.memory_is_whole = case["whole"]
    for key, s in zip(SENDERS, case["senders"], strict=False):
        _sender(book, outcomes.failures, key, s)
    for qid, m in zip(QUEUE_IDS, case["messages"], strict=False):
        book.messages.add(MessageInfo("mx1", qid, m["sender"], 0.0, rcpt_count=m["rcpt_count"],
                                      list_like=m["list_like"], null_sender=m["null_sender"],
                                      auto_reply=m["auto_reply"]))
    book.dirty.clear()
    return book, outcomes, calls


def freeze(x: Any) -> Any:
    """A comparable copy of `x`, walking slots, fields and containers (NaN as text)."""
    if isinstance(x, float):
        return repr(x)
    if x is None or isinstance(x, (str, int, bool, Enum)):
        return x
    if isinstance(x, (dict, MappingProxyType)):
        return [(freeze(k), freeze(v)) for k, v in x.items()]
    if isinstance(x, (list, tuple)) or type(x).__name__ == "deque":
        return [freeze(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted(repr(freeze(v)) for v in x)
    # Slots, a compiled (mypyc) class's attributes, and the instance's dict.
    names = list(dict.fromkeys(n for c in type(x).__mro__
                               for n in (*getattr(c, "__slots__", ()),
                                         *getattr(c, "__mypyc_attrs__", ()))))
    names += list(getattr(x, "__dict__", {}))
    out = {}
    for n in names:
        try:
            out[n] = freeze(object.__getattribute__(x, n))
        except AttributeError:
            out[n] = "<unmade>"
    return (type(x).__name__, out)


def snapshot(book: SenderBook, outcomes: Outcomes, calls: list[int]) -> Any:
    return freeze({
        "senders": book.senders, "dirty": book.dirty, "batch": book.batch,
        "changes": book.changes, "notices": book.notices,
        "messages": book.messages, "failures": outcomes.failures,
        "unresolved": outcomes.unresolved, "after_record": calls[0],
    })


@settings(max_examples=600, deadline=None)
@given(case=cases)
def test_the_fast_path_records_what_the_general_path_does(case: dict[str, Any]) -> None:
    cap = judge.MAX_ATTEMPTED
    judge.MAX_ATTEMPTED = outcomefast.MAX_ATTEMPTED = case["cap"]
    try:
        fast, general = build(case), build(case)
        assert snapshot(*fast) == snapshot(*general)
        for t, qid, rcpt, status, sender, mta in case["events"]:
            event = Outcome(float(t), qid, rcpt, status, "2.0.0", "250 ok", sender, None, mta)
            fast[1].outcome(event)
            general[1].general(event)
            assert snapshot(*fast) == snapshot(*general)
    finally:
        judge.MAX_ATTEMPTED = outcomefast.MAX_ATTEMPTED = cap


def test_the_common_delivery_takes_the_fast_path() -> None:
    """Not vacuous: a delivery of a known message by a settled sender never reaches
    `general()`, and anything else does."""
    case = {"senders": [{"state": State.OK, "probation": None, "pin": None,
                         "config_pin": None, "base": 0.5, "pending": 0.0, "dirty": False,
                         "written": False, "attempted": [], "failed": []}],
            "messages": [{"sender": "s1", "rcpt_count": 2, "list_like": False,
                          "null_sender": False, "auto_reply": False}] * 2,
            "events": [], "keeps_rows": True, "whole": True, "shared": True,
            "shared_from": 1}
    book, outcomes, calls = build(case)
    # Not vacuous either: the snapshot sees a sender's fields, compiled or not.
    fields = freeze(book.senders["s1"])[1]
    assert {"state", "base", "pending", "_attempted", "last_seen"} <= set(fields)
    outcomes.outcome(Outcome(5.0, "q1", "a@x.example", Status.SENT, sender="s1"))
    assert outcomes.general_count == 0 and calls == [1]
    assert "a@x.example" in book.senders["s1"].attempted
    assert len(book.batch.recipient_rows) == 1
    for event in (Outcome(5.0, "q1", "b@x.example", Status.BOUNCED),
                  Outcome(5.0, "q3", "b@x.example", Status.SENT, sender="s1"),
                  Outcome(5.0, "q1", "b@x.example", Status.SENT, sender="s9")):
        outcomes.outcome(event)
    assert outcomes.general_count == 3 and calls == [4]
    book.senders["s1"].pending = 10.0  # at `watch`: its state may move, judged in full
    outcomes.outcome(Outcome(6.0, "q2", "c@y.example", Status.SENT))
    assert outcomes.general_count == 4
