"""The evidence windows' in-place refresh and combined asks (memory.WindowSet) against
the appending window they shortcut, over varied input (times stepping back included)."""

from __future__ import annotations

import random

import pytest

from extrusion.scoring.memory import WindowSet


class AppendingWindow:
    """WindowSet as it was before the in-place refresh: every stamp appended."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.last: dict[str, float] = {}
        self.order: list[tuple[float, str]] = []

    def expire(self, now: float) -> None:
        horizon, gone = now - self.window, 0
        for t, item in self.order:
            if t > horizon:
                break
            gone += 1
            if self.last.get(item) == t:
                del self.last[item]
        del self.order[:gone]

    def add(self, item: str, now: float) -> bool:
        self.expire(now)
        new = item not in self.last
        if not new and self.last[item] >= now:
            return False
        self.last[item] = now
        self.order.append((now, item))
        return new

    def count(self, now: float) -> int:
        self.expire(now)
        return len(self.last)


@pytest.mark.parametrize("seed", range(6))
def test_window_set_answers_as_the_appending_window(seed: int) -> None:
    # Times step back now and then (a log's lines are not in order), items repeat
    # (the same domain message after message) or not: every answer and the order of
    # items() stay the appending window's.
    rng = random.Random(seed)
    w, ref = WindowSet(50.0), AppendingWindow(50.0)
    now = 0.0
    for _ in range(4000):
        now = max(0.0, now + rng.choice((0.0, 0.5, 1.0, 3.0, 20.0, 60.0, -2.0, -30.0)))
        item = f"d{rng.randrange(rng.choice((1, 3, 12)))}"
        what = rng.random()
        if what < 0.5:
            assert w.add(item, now) is ref.add(item, now)
        elif what < 0.7:
            want = before = ref.count(now)
            want += 1 if want <= 4 and ref.add(item, now) else 0
            assert w.add_all((item,), now, 5) == (want, want > before)
        elif what < 0.85:
            items = [f"d{rng.randrange(8)}" for _ in range(rng.randrange(4))]
            n, grew = ref.count(now), False
            for i in items:
                if n >= 6:
                    break
                if ref.add(i, now):
                    grew, n = True, n + 1
            assert w.add_all(items, now, 6) == (n, grew)
        else:
            assert w.count(now) == ref.count(now)
        assert w.items(now) == list(ref.last)


def test_a_refreshed_newest_item_does_not_grow_the_window() -> None:
    w = WindowSet(3600.0)
    for t in range(100):
        w.add("example.com", float(t))
    assert w._order == [(99.0, "example.com")]
