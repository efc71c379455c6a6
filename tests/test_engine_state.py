"""The state machine and the score: thresholds, hysteresis, decay (pure functions)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extrusion.config import Scoring
from extrusion.scoring.events import State
from extrusion.scoring.memory import SenderMemory, WindowSet
from extrusion.scoring.rows import decay
from extrusion.scoring.state import Thresholds, by_score, next_state

T = Thresholds(watch=10.0, throttle=20.0, hold=40.0, block=0.0, release_ratio=0.5)
T_BLOCK = Thresholds(watch=10.0, throttle=20.0, hold=40.0, block=80.0, release_ratio=0.5)
HL = 3600.0


def test_thresholds_come_from_config() -> None:
    t = Thresholds.from_config(Scoring())
    assert (t.watch, t.throttle, t.hold, t.block, t.release_ratio) == (10, 20, 40, 0, 0.5)


@pytest.mark.parametrize(
    ("score", "state"),
    [(0.0, State.OK), (9.99, State.OK), (10.0, State.WATCH), (20.0, State.THROTTLED),
     (39.0, State.THROTTLED), (40.0, State.HELD), (1e9, State.HELD)],
)
def test_by_score(score: float, state: State) -> None:
    assert by_score(score, T) is state


def test_block_only_with_a_block_threshold() -> None:
    assert by_score(1000.0, T) is State.HELD
    assert by_score(80.0, T_BLOCK) is State.BLOCKED


def test_rises_straight_to_the_highest_state_reached() -> None:
    assert next_state(State.OK, 45.0, T) is State.HELD


def test_falls_only_below_threshold_times_release_ratio() -> None:
    # Held at 40: stays held down to 20 (40 * 0.5), throttled until 10, watch until 5.
    assert next_state(State.HELD, 20.0, T) is State.HELD
    assert next_state(State.HELD, 19.9, T) is State.THROTTLED
    assert next_state(State.THROTTLED, 10.0, T) is State.THROTTLED
    assert next_state(State.THROTTLED, 9.0, T) is State.WATCH
    assert next_state(State.WATCH, 5.0, T) is State.WATCH
    assert next_state(State.WATCH, 4.9, T) is State.OK


def test_a_big_drop_falls_several_states_at_once() -> None:
    assert next_state(State.HELD, 1.0, T) is State.OK
    assert next_state(State.HELD, 12.0, T) is State.THROTTLED
    assert next_state(State.HELD, 8.0, T) is State.WATCH


def test_blocked_without_block_threshold_falls_like_held() -> None:
    assert next_state(State.BLOCKED, 25.0, T) is State.BLOCKED
    assert next_state(State.BLOCKED, 19.0, T) is State.THROTTLED


scores = st.floats(min_value=0.0, max_value=200.0, allow_nan=False)
states = st.sampled_from(list(State))
thresholds = st.sampled_from([T, T_BLOCK])


@given(states, scores, thresholds)
def test_states_move_only_by_the_rules(current: State, score: float, t: Thresholds) -> None:
    new = next_state(current, score, t)
    if new.rank > current.rank:  # a rise: exactly to the state the score reached
        assert new is by_score(score, t)
        rise = t.rise_at(new)
        assert rise is not None and score >= rise
    elif new.rank < current.rank:  # a fall: only below the hysteresis line
        assert score < t.fall_below(current)
        assert new is State.OK or score >= t.fall_below(new)
    else:  # staying: nothing to rise to, and not below the line
        assert by_score(score, t).rank <= current.rank
        assert current is State.OK or score >= t.fall_below(current)


@given(st.lists(scores, max_size=30), thresholds)
def test_a_state_reached_is_stable_for_the_same_score(seq: list[float], t: Thresholds) -> None:
    state = State.OK
    for score in seq:
        state = next_state(state, score, t)
        assert next_state(state, score, t) is state


events = st.lists(
    st.tuples(st.floats(min_value=-1e5, max_value=1e6, allow_nan=False),
              st.floats(min_value=-5.0, max_value=50.0, allow_nan=False)),
    max_size=40,
)


@settings(max_examples=200)
@given(events)
def test_score_is_never_negative_whatever_the_clock_does(seq: list[tuple[float, float]]) -> None:
    mem = SenderMemory("ip:192.0.2.1", 0.0, 3600.0)
    for t, weight in seq:
        mem.add(weight, t, HL)
        assert mem.score(t, HL) >= 0.0
        mem.raise_to(weight, t, HL)
        assert mem.score(t, HL) >= max(weight, 0.0) - 1e-9
        mem.forget(t) if weight < 0 else None
        assert mem.score(t + 1.0, HL) >= 0.0


def test_score_decays_by_half_life_and_forget_clears() -> None:
    mem = SenderMemory("ip:192.0.2.1", 0.0, 3600.0)
    mem.add(8.0, 0.0, HL)
    assert mem.score(HL, HL) == pytest.approx(4.0)
    mem.add(4.0, HL, HL)
    assert mem.score(HL, HL) == pytest.approx(8.0)
    assert mem.score(3 * HL, HL) == pytest.approx(2.0)
    mem.forget(3 * HL)
    assert mem.score(3 * HL, HL) == 0.0 and mem.reset


@settings(max_examples=200)
@given(base=st.sampled_from([-3.0, -0.0, 0.0, 1e-300, 2.5]),
       pending=st.sampled_from([-1.0, 0.0, 1e-12, 7.0]),
       elapsed=st.sampled_from([-60.0, 0.0, 1.0, HL, 40 * HL]))
def test_score_is_the_decayed_evidence_with_or_without_any(base: float, pending: float,
                                                           elapsed: float) -> None:
    # score() answers 0 without decaying for a sender with no evidence (most senders):
    # the same as the decay of both parts, evidence or none.
    mem = SenderMemory("ip:192.0.2.1", 100.0, 3600.0)
    mem.base, mem.pending = base, pending
    expected = decay(base, elapsed, HL) + decay(pending, elapsed, HL)
    assert mem.score(100.0 + elapsed, HL) == expected


def test_window_set_counts_distinct_items_in_the_window() -> None:
    w = WindowSet(100.0)
    assert w.add("a", 0.0) and w.add("b", 10.0)
    assert not w.add("a", 50.0)  # seen again: refreshed, not new
    assert w.count(60.0) == 2
    assert w.count(105.0) == 2  # a (refreshed at 50) and b (seen at 10) are both inside
    assert w.items(111.0) == ["a"]  # b left the window at 110
    assert w.count(151.0) == 0
    assert w.add("a", 151.0)


def test_window_set_answers_as_a_plain_window_through_many_expiries() -> None:
    # Expiry cuts the list only now and then (a head index in between): every answer
    # must still be the window's, whatever the mix of adds, refreshes and counts.
    rng = random.Random(17)
    w = WindowSet(50.0)
    seen: dict[str, float] = {}  # the reference: each item's latest time
    now = 0.0
    for _ in range(5000):
        now += rng.choice((0.0, 0.5, 1.0, 3.0, 40.0))
        seen = {k: t for k, t in seen.items() if t > now - 50.0}
        item = f"r{rng.randrange(40)}"
        if rng.random() < 0.6:
            assert w.add(item, now) is (item not in seen)
            seen[item] = now
        else:
            assert w.count(now) == len(seen)
            assert (item in w) is (item in seen)
        assert sorted(w.items(now)) == sorted(seen)
