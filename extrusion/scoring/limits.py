"""Automatic rate limits: sliding-window counters per sender, checked at RCPT and EOM.

A window is kept as a short deque of fixed buckets with a running total, so
checking and consuming are O(1) however busy the sender is. The window is
slightly conservative: a bucket leaves only when all of it is older than the
window. Volume never raises a score; limits only protect.

Which budget applies is the sender's evidence, `budget()`: its class's
generous safety net while nothing speaks against it (more generous still for
a recognised mailing list), the tighter `watch` budget on first evidence, the
`throttled` trickle once the evidence throttles it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from extrusion.config import Limits
from extrusion.scoring.events import State

HOUR = 3600.0
DAY = 86400.0
# Bucket widths: 60 per hour window, 288 per day window.
HOUR_BUCKET = 60.0
DAY_BUCKET = 300.0

# The limits classes the engine chooses by state and evidence (config requires them).
DEFAULT = "default"
WATCH = "watch"
THROTTLED = "throttled"
LIST = "list"


def _tighter(x: int, y: int) -> int:
    return min(x, y) if x and y else x or y  # 0 is no limit: the other one is stricter


def _looser(x: int, y: int) -> int:
    return max(x, y) if x and y else 0  # 0 is no limit: nothing is looser


# Combined budgets are asked for at every RCPT of a watched or list sender: cached
# (a handful of classes, so a handful of combinations).
@functools.lru_cache(maxsize=64)
def tighter(a: Limits, b: Limits) -> Limits:
    """The stricter of two budgets, limit by limit."""
    return replace(a, **{f.name: _tighter(getattr(a, f.name), getattr(b, f.name))
                         for f in fields(Limits)})


@functools.lru_cache(maxsize=64)
def looser(a: Limits, b: Limits) -> Limits:
    """The more generous of two budgets, limit by limit."""
    return replace(a, **{f.name: _looser(getattr(a, f.name), getattr(b, f.name))
                         for f in fields(Limits)})


def budget(classes: Mapping[str, Limits], cls: str, state: State, *,
           list_sender: bool = False) -> tuple[str, Limits]:
    """The budget a sender in `state` is held to, and its name for the operator's log.

    - `ok`: its class (`default` unless a customer or override names one), a
      safety net against a runaway sender whose outcomes have not come back
      yet, not a volume cap. A `list_sender` (its recent list posts' outcomes
      looked like a list: most delivered, few failing) gets the more generous
      of its class and `[limits.list]`, so a list's next posts go through.
    - `watch`: evidence: the stricter of its class and `[limits.watch]`.
    - `throttled`: the `[limits.throttled]` trickle, whatever the class.
    """
    if state is State.THROTTLED:
        return THROTTLED, classes[THROTTLED]
    own = classes.get(cls)
    if own is None:
        cls, own = DEFAULT, classes[DEFAULT]
    if state is State.WATCH:
        return f"{cls}+{WATCH}", tighter(own, classes[WATCH])
    if list_sender:
        return f"{cls}+{LIST}", looser(own, classes[LIST])
    return cls, own


NO_BUCKET = float("-inf")  # a counter's newest bucket, while it has none


class SlidingCounter:
    """Sum of amounts added within the last `window` seconds, in buckets.

    Most senders' counters hold one bucket or none, and every object a sender
    keeps is walked by the garbage collector again and again (a deque costs
    380 bytes however few it holds; a list per bucket made a sender's first
    sight slow: benchmarks/scale.py). So the newest bucket lives in the
    counter itself, and the older ones in one flat list (start, amount, start,
    amount ...) made when a second bucket begins and dropped when they expire
    (at most 288, so cutting the head of the list is cheap).
    """

    __slots__ = ("_older", "amount", "bucket", "start", "total", "window")

    def __init__(self, window: float, bucket: float) -> None:
        self.window = window
        self.bucket = bucket
        self.total = 0
        self.start, self.amount = NO_BUCKET, 0.0  # the newest bucket
        self._older: list[float] | None = None

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        older = self._older
        if older is not None:
            gone, size = 0, len(older)
            while gone < size and older[gone] + self.bucket <= horizon:
                self.total -= int(older[gone + 1])
                gone += 2
            if gone == size:
                self._older = None
            elif gone:
                del older[:gone]
        if (self._older is None and self.start != NO_BUCKET
                and self.start + self.bucket <= horizon):
            self.total -= int(self.amount)
            self.start, self.amount = NO_BUCKET, 0.0

    def value(self, now: float) -> int:
        self._expire(now)
        return self.total

    def add(self, amount: int, now: float) -> None:
        self._expire(now)
        start = now - (now % self.bucket)
        if self.start >= start:
            self.amount += amount
        else:
            if self.start != NO_BUCKET:  # the newest bucket becomes an older one
                if self._older is None:
                    self._older = [self.start, self.amount]
                else:
                    self._older += (self.start, self.amount)
            self.start, self.amount = start, float(amount)
        self.total += amount

    @property
    def empty(self) -> bool:
        return self.start == NO_BUCKET


@dataclass(frozen=True, slots=True)
class Exceeded:
    """Which limit would be broken, phrased for the operator's log."""

    what: str  # "recipients per hour", ...
    limit: int
    current: int


@dataclass(frozen=True, slots=True)
class OthersUse:
    """What the other hosts of a shared store let one sender send (scoring/shared.py),
    as of the last refresh."""

    recipients_hour: int = 0
    recipients_day: int = 0
    messages_hour: int = 0
    messages_day: int = 0
    recipients_recent: int = 0  # within the probation window


NO_OTHERS = OthersUse()


# A counter of a sender's rates: none yet; its one bucket (start, amount), a tuple of
# floats, which the garbage collector stops walking at its first pass over it; or,
# once a second bucket begins, a SlidingCounter.
Counter = SlidingCounter | tuple[float, float] | None


def observed(c: Counter, window: float, bucket: float, now: float) -> tuple[Counter, int]:
    """What counter `c` (of `window` seconds in `bucket`s) holds at `now`, and the counter
    from then on: a bucket gone out of the window is dropped, as SlidingCounter drops it."""
    if c is None:
        return None, 0
    if isinstance(c, tuple):
        if c[0] + bucket <= now - window:
            return None, 0
        return c, int(c[1])
    return c, c.value(now)


def added(c: Counter, window: float, bucket: float, amount: int, now: float) -> Counter:
    """Counter `c` with `amount` more at `now` (as SlidingCounter.add counts it)."""
    start = now - (now % bucket)
    if c is None or (isinstance(c, tuple) and c[0] + bucket <= now - window):
        return (start, float(amount))
    if isinstance(c, tuple):
        if c[0] >= start:
            return (c[0], c[1] + amount)
        counter = SlidingCounter(window, bucket)
        counter.start, counter.amount, counter.total = c[0], c[1], int(c[1])
        c = counter
    c.add(amount, now)
    return c


class RateState:
    """One sender's message and recipient counters for the hour and the day, each a
    `Counter`: most senders' hold one bucket or none, and a sender's first sight should
    make as few objects as it can (benchmarks/scale.py)."""

    __slots__ = ("msg_day", "msg_hour", "others", "rcpt_day", "rcpt_hour")

    def __init__(self) -> None:
        self.msg_hour: Counter = None
        self.rcpt_hour: Counter = None
        self.msg_day: Counter = None
        self.rcpt_day: Counter = None
        self.others = NO_OTHERS

    def check(self, limits: Limits, recipients: int, messages: int, now: float) -> Exceeded | None:
        """The first limit that `recipients` more recipients / `messages` more messages break,
        counting what the other hosts spent as spent here. Written out, not looped: it
        runs at every recipient, and a counter is only looked at when it has a limit."""
        o = self.others
        if recipients > 0:
            if limit := limits.recipients_per_hour:
                self.rcpt_hour, n = observed(self.rcpt_hour, HOUR, HOUR_BUCKET, now)
                if (n := n + o.recipients_hour) + recipients > limit:
                    return Exceeded("recipients per hour", limit, n)
            if limit := limits.recipients_per_day:
                self.rcpt_day, n = observed(self.rcpt_day, DAY, DAY_BUCKET, now)
                if (n := n + o.recipients_day) + recipients > limit:
                    return Exceeded("recipients per day", limit, n)
        if messages > 0:
            if limit := limits.messages_per_hour:
                self.msg_hour, n = observed(self.msg_hour, HOUR, HOUR_BUCKET, now)
                if (n := n + o.messages_hour) + messages > limit:
                    return Exceeded("messages per hour", limit, n)
            if limit := limits.messages_per_day:
                self.msg_day, n = observed(self.msg_day, DAY, DAY_BUCKET, now)
                if (n := n + o.messages_day) + messages > limit:
                    return Exceeded("messages per day", limit, n)
        return None

    def peek_messages(self, limits: Limits, now: float) -> Exceeded | None:
        """Is the message budget already spent (asked at MAIL/DATA, consumes nothing)?"""
        return self.check(limits, 0, 1, now)

    def consume(self, recipients: int, messages: int, now: float) -> None:
        if recipients > 0:
            self.rcpt_hour = added(self.rcpt_hour, HOUR, HOUR_BUCKET, recipients, now)
            self.rcpt_day = added(self.rcpt_day, DAY, DAY_BUCKET, recipients, now)
        if messages > 0:
            self.msg_hour = added(self.msg_hour, HOUR, HOUR_BUCKET, messages, now)
            self.msg_day = added(self.msg_day, DAY, DAY_BUCKET, messages, now)

    def idle(self, now: float) -> bool:
        """True when every window has emptied (the state can be dropped)."""
        if self.others is not NO_OTHERS:
            return False
        self.msg_hour, n = observed(self.msg_hour, HOUR, HOUR_BUCKET, now)
        if n:
            return False
        self.rcpt_hour, n = observed(self.rcpt_hour, HOUR, HOUR_BUCKET, now)
        if n:
            return False
        self.msg_day, n = observed(self.msg_day, DAY, DAY_BUCKET, now)
        if n:
            return False
        self.rcpt_day, n = observed(self.rcpt_day, DAY, DAY_BUCKET, now)
        return not n
