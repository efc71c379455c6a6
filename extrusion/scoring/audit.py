"""One audit row per real transition, however many hosts saw it.

Hosts sharing a store each judge a spread-out bot and may move it from `ok`
to `watch` within the same second; the one that hears of the other's move
first follows it without an audit row (adopt.py), but two that move at once
both write one. Before an engine's row is written (under the sender row's
lock, so two hosts cannot both miss each other's), it is dropped when a row
for the same sender and the same (old, new) states lies within
`DUPLICATE_SECONDS` of it and the sender did not return to the old state in
between (that would be a second, real transition). Operators' rows are never
dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

DUPLICATE_SECONDS = 60.0
ENGINE = "engine"  # the `who` of the engine's own transitions


def duplicate(time: float, old: str, new: str,
              recent: Sequence[tuple[float, str, str]]) -> bool:
    """Whether the transition (time, old, new) is already among `recent` (time, old,
    new) rows of the same sender."""
    for t, o, n in recent:
        if (o, n) != (old, new) or abs(t - time) > DUPLICATE_SECONDS:
            continue
        lo, hi = min(t, time), max(t, time)
        if not any(lo < t2 < hi and n2 == old for t2, _, n2 in recent):
            return True
    return False
