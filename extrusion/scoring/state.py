"""The state machine: ok -> watch -> throttled -> held -> blocked, by score, with hysteresis.

A sender rises as soon as its score reaches a state's threshold (directly to
the highest state reached) and falls back only when the score has decayed
below `threshold * release_ratio` of the state it is in, one state per
threshold crossed. Pure functions; the engine applies pins on top.
"""

from __future__ import annotations

from dataclasses import dataclass

from extrusion.config import Scoring
from extrusion.scoring.events import State

_ORDER = tuple(State)  # OK, WATCH, THROTTLED, HELD, BLOCKED

# The state a pin holds a sender in, whoever set it: an operator (CLI or API) or a
# config override. "monitor" and "limits" pin no state: the score decides.
PIN_STATES = {"allow": State.OK, "block": State.BLOCKED, "hold": State.HELD}


@dataclass(frozen=True, slots=True)
class Thresholds:
    watch: float
    throttle: float
    hold: float
    block: float  # 0: never automatically
    release_ratio: float

    @classmethod
    def from_config(cls, s: Scoring) -> Thresholds:
        return cls(s.watch_score, s.throttle_score, s.hold_score, s.block_score, s.release_ratio)

    def rise_at(self, state: State) -> float | None:
        """The score at which a sender enters `state` (None: never automatically)."""
        if state is State.OK:
            return 0.0
        if state is State.WATCH:
            return self.watch
        if state is State.THROTTLED:
            return self.throttle
        if state is State.HELD:
            return self.hold
        return self.block or None

    def fall_below(self, state: State) -> float:
        """Below this score a sender in `state` falls back (hysteresis)."""
        rise = self.rise_at(state)
        if rise is None:  # blocked without an automatic block threshold: as for held
            rise = self.hold
        return rise * self.release_ratio


def by_score(score: float, t: Thresholds) -> State:
    """The highest state whose rising threshold the score has reached."""
    best = State.OK
    for state in _ORDER[1:]:
        rise = t.rise_at(state)
        if rise is not None and score >= rise:
            best = state
    return best


def next_state(current: State, score: float, t: Thresholds) -> State:
    """Where a sender in `current` with `score` should be now."""
    target = by_score(score, t)
    if target.rank > current.rank:
        return target
    state = current
    while state is not State.OK and score < t.fall_below(state):
        state = _ORDER[state.rank - 1]
    return state
