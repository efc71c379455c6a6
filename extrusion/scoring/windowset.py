"""A sender's evidence window: the distinct items seen within the last so many seconds.

Its own module so that `memory.py` (the sender) and `lazyparts.py` (the sender's
lazy parts, which `memory.py` builds on) both name it without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable


class WindowSet:
    """Distinct items seen within the last `window` seconds (e.g. failed recipients).

    Nine of these per sender, mostly empty or holding a few items: the dict and
    the list are made on the first add and dropped once the window empties
    again. A list, not a deque: a deque costs 380 bytes however few it holds,
    which made two thirds of a sender's memory; expiry cuts the list's head in
    one slice, so it stays linear.
    """

    __slots__ = ("_last", "_order", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._last: dict[str, float] | None = None
        self._order: list[tuple[float, str]] | None = None

    def _expire(self, now: float) -> None:
        order, last = self._order, self._last
        if order is None or last is None:
            return
        horizon = now - self.window
        if order[0][0] > horizon:
            return  # nothing due (nearly every call: several per event)
        gone = 0
        for t, item in order:
            if t > horizon:
                break
            gone += 1
            if last.get(item) == t:
                del last[item]
        if gone == len(order):
            self._order = self._last = None
        elif gone:
            del order[:gone]

    def add(self, item: str, now: float) -> bool:
        """Add or refresh `item`; True when it was not in the window before."""
        order = self._order
        if order is not None and order[0][0] <= now - self.window:
            self._expire(now)  # (only when something is due: the call is most of an add)
        if self._last is None or self._order is None:
            self._last, self._order = {}, []
        last = self._last
        new = item not in last
        if not new and last[item] >= now:
            return False
        last[item] = now
        order = self._order
        # An item refreshed while its entry is still the newest takes that entry's place
        # instead of growing the list (a busy sender's one envelope domain, stamped at
        # every message). The same answers: an item's newest entry is the only one
        # `_expire` can drop it by (its earlier ones hold older times than `_last`:
        # stamps rise), and the entry replaced is older than its replacement, so a walk
        # that stopped at it stops at the replacement, right behind it, as well.
        if not new and order[-1][1] == item:
            order[-1] = (now, item)
        else:
            order.append((now, item))
        return new

    def add_all(self, items: Iterable[str], now: float, limit: int) -> tuple[int, bool]:
        """`count(now)`, then `add(item, now)` for each item while the count is below
        `limit`: (the count after, whether any was new), in one call, `add`'s steps
        written out (a submission's recipient domains: one call, not one per domain)."""
        horizon = now - self.window
        order = self._order
        if order is not None and order[0][0] <= horizon:
            self._expire(now)
        last, order = self._last, self._order
        n, grew = (len(last) if last is not None else 0), False
        for item in items:
            if n >= limit:
                break
            if last is None or order is None or order[0][0] <= horizon:
                # The first item, or one due already (a window of no length): add's own.
                if self.add(item, now):
                    grew, n = True, n + 1
                last, order = self._last, self._order
                continue
            seen = last.get(item)
            if seen is None:
                last[item] = now
                order.append((now, item))
                grew, n = True, n + 1
            elif seen < now:
                last[item] = now
                if order[-1][1] == item:  # as in add()
                    order[-1] = (now, item)
                else:
                    order.append((now, item))
        return n, grew

    def __contains__(self, item: str) -> bool:
        return self._last is not None and item in self._last

    def count(self, now: float) -> int:
        order = self._order
        if order is None:
            return 0
        if order[0][0] <= now - self.window:
            self._expire(now)
        return len(self._last) if self._last is not None else 0

    def items(self, now: float) -> list[str]:
        self._expire(now)
        return list(self._last) if self._last is not None else []

    @property
    def empty(self) -> bool:
        return self._last is None

    def clear(self) -> None:
        self._last = self._order = None
