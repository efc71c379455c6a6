"""Rate limits: sliding windows per sender; the budget follows the sender's evidence."""

from __future__ import annotations

import random

import pytest

from extrusion.config import Limits, from_dict
from extrusion.scoring.events import State
from extrusion.scoring.limits import (
    DAY,
    DAY_BUCKET,
    HOUR,
    HOUR_BUCKET,
    Counter,
    RateState,
    SlidingCounter,
    added,
    budget,
    looser,
    observed,
    tighter,
)


def test_sliding_counter_forgets_after_the_window() -> None:
    c = SlidingCounter(HOUR, 60.0)
    c.add(5, 0.0)
    c.add(3, 30.0)
    c.add(2, 1800.0)
    assert c.value(1800.0) == 10
    assert c.value(3599.0) == 10
    assert c.value(3660.0) == 2  # the first bucket (0-60 s) is wholly out of the window
    assert c.value(5460.0) == 0
    assert c.empty


@pytest.mark.parametrize(("window", "bucket"), [(HOUR, HOUR_BUCKET), (DAY, DAY_BUCKET)])
def test_a_counter_of_one_bucket_counts_as_a_sliding_counter(window: float,
                                                              bucket: float) -> None:
    """A rate counter is a tuple until its second bucket: the same counts either way,
    over gaps longer than the window and a clock that steps back."""
    rnd = random.Random(7)
    for _ in range(200):
        c: Counter = None
        ref = SlidingCounter(window, bucket)
        t = 1_700_000_000.0
        for _ in range(rnd.randrange(1, 12)):
            t += rnd.choice((0.0, 1.0, bucket / 2, bucket, window / 3, window, 2 * window,
                             -bucket))
            n = rnd.randrange(1, 5)
            c = added(c, window, bucket, n, t)
            ref.add(n, t)
            for later in (t, t + bucket, t + window / 2, t + window, t + window + bucket):
                c, value = observed(c, window, bucket, later)
                assert value == ref.value(later)
    assert isinstance(added(None, window, bucket, 1, 0.0), tuple)


def test_recipient_budget_per_hour() -> None:
    limits = Limits(recipients_per_hour=20)
    r = RateState()
    assert r.check(limits, 15, 0, 0.0) is None
    r.consume(15, 0, 0.0)
    over = r.check(limits, 6, 0, 10.0)
    assert over is not None and (over.what, over.limit, over.current) == (
        "recipients per hour", 20, 15)
    assert r.check(limits, 5, 0, 10.0) is None
    assert r.check(limits, 6, 0, HOUR + 61.0) is None  # an hour later the budget is back


def test_message_budgets_hour_and_day() -> None:
    limits = Limits(messages_per_hour=10, messages_per_day=15)
    r = RateState()
    for i in range(10):
        assert r.check(limits, 0, 1, float(i)) is None
        r.consume(0, 1, float(i))
    over = r.peek_messages(limits, 20.0)
    assert over is not None and over.what == "messages per hour"
    for i in range(5):
        t = HOUR + 120.0 + i
        assert r.check(limits, 0, 1, t) is None
        r.consume(0, 1, t)
    over = r.check(limits, 0, 1, HOUR + 200.0)
    assert over is not None and over.what == "messages per day"
    assert not r.idle(HOUR + 200.0)
    assert r.idle(HOUR * 26)


def test_zero_means_no_limit() -> None:
    r = RateState()
    r.consume(10**6, 10**5, 0.0)
    assert r.check(Limits(), 10**6, 1, 1.0) is None


def test_tighter_and_looser_treat_zero_as_no_limit() -> None:
    a = Limits(messages_per_hour=100, recipients_per_hour=0, messages_per_day=5)
    b = Limits(messages_per_hour=10, recipients_per_hour=300)
    assert tighter(a, b) == Limits(messages_per_hour=10, recipients_per_hour=300,
                                   messages_per_day=5)
    assert looser(a, b) == Limits(messages_per_hour=100)


CLASSES = from_dict({
    "limits": {"gold": {"recipients_per_hour": 50}, "wide": {"recipients_per_hour": 10**6}},
}).limits


@pytest.mark.parametrize(("cls", "state", "list_sender", "name", "recipients_per_hour"), [
    # ok: the class's safety net; a recognised list the more generous of it and [limits.list]
    ("default", State.OK, False, "default", 20000),
    ("nonesuch", State.OK, False, "default", 20000),
    ("consumer", State.OK, False, "consumer", 300),
    ("consumer", State.OK, True, "consumer+list", 100000),
    ("wide", State.OK, True, "wide+list", 10**6),
    # watch: evidence, so the stricter of the class and [limits.watch], list or not
    ("default", State.WATCH, True, "default+watch", 2000),
    ("gold", State.WATCH, False, "gold+watch", 50),
    # throttled: the trickle, whatever the class
    ("business", State.THROTTLED, True, "throttled", 20),
])
def test_the_budget_follows_the_evidence(
    cls: str, state: State, list_sender: bool, name: str, recipients_per_hour: int
) -> None:
    got_name, limits = budget(CLASSES, cls, state, list_sender=list_sender)
    assert (got_name, limits.recipients_per_hour) == (name, recipients_per_hour)
