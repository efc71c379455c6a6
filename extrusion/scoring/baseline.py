"""A compact per-sender baseline: what its own mail usually looks like.

Usual HELOs, usual envelope-sender domains, whether it authenticates, and
how many recipients it sends in a typical active hour. A few dozen numbers
and names per sender, bounded, kept in memory and persisted in the store
(`sender_baselines`), so "departs from its own history" survives a restart.
Pure bookkeeping: no clock, no store (times come with the calls).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

MAX_NAMES = 8  # usual HELOs / envelope domains kept per sender
HOUR = 3600.0
# Weight of the latest finished hour in the typical hour (an exponential moving
# average): about the last ten active hours count.
HOUR_WEIGHT = 0.1
# A name used in at most this share of the messages is not "usual".
USUAL_SHARE = 0.05
MAX_TEXT = 255  # characters of a stored name
# Baselines kept for senders not in memory (idle, or not seen since start) and loaded
# from the store at start, the most recent first: about 1 KB each at most.
MAX_KEPT = 50_000
MAX_LISTS = 16  # list identities kept per sender (the least recently posted dropped)
# Outcomes remembered: beyond this both counts are halved, so the share follows the
# sender's recent deliveries rather than its whole life.
MAX_OUTCOMES = 2000


def _bump(names: dict[str, int], name: str) -> None:
    """Count `name`, keeping at most MAX_NAMES: a new name replaces the rarest."""
    if not name:
        return
    name = name[:MAX_TEXT]
    if name in names:
        names[name] += 1
        return
    if len(names) >= MAX_NAMES:
        rarest = min(names, key=names.__getitem__)
        if names[rarest] > 1:
            # Halve everyone instead of dropping an established name for a one-off.
            for k in names:
                names[k] //= 2
            names.pop(min(names, key=names.__getitem__))
        else:
            del names[rarest]
    names[name] = 1


@dataclass(slots=True)
class Baseline:
    messages: int = 0
    authenticated: int = 0
    unauthenticated: int = 0
    helos: dict[str, int] = field(default_factory=dict)
    domains: dict[str, int] = field(default_factory=dict)
    typical_hour: float = 0.0  # recipients in a typical active hour
    hour_start: float = 0.0  # the hour being counted now
    hour_recipients: int = 0
    # Standing over time (`standing.py`): when first seen, how its deliveries go, how
    # much of its mail is someone else's (forwarded), and its list identities with the
    # times of their first and latest post.
    since: float = 0.0
    delivered: int = 0
    failed: int = 0
    foreign: int = 0
    lists: dict[str, list[float]] = field(default_factory=dict)
    dirty: bool = False

    def established(self, min_messages: int) -> bool:
        return self.messages >= min_messages

    def _roll(self, now: float) -> None:
        start = now - now % HOUR
        if start <= self.hour_start:
            return
        if self.hour_recipients:
            if self.typical_hour <= 0.0:
                self.typical_hour = float(self.hour_recipients)
            else:
                self.typical_hour += HOUR_WEIGHT * (self.hour_recipients - self.typical_hour)
        self.hour_start, self.hour_recipients = start, 0

    def this_hour(self, now: float) -> int:
        if now - now % HOUR > self.hour_start:  # _roll()'s test: a new hour, seldom
            self._roll(now)
        return self.hour_recipients

    def learn(self, now: float, helo: str, domain: str, authenticated: bool | None,
              recipients: int) -> None:
        """One message sent: learn from it (after it was judged against the baseline)."""
        if now - now % HOUR > self.hour_start:  # _roll()'s test: a new hour, seldom
            self._roll(now)
        if self.messages == 0 or self.since <= 0.0:
            self.since = now
        self.messages += 1
        self.hour_recipients += max(recipients, 0)
        if authenticated is True:
            self.authenticated += 1
        elif authenticated is False:
            self.unauthenticated += 1
        # (A logged message seldom names its HELO: no call to count nothing.)
        if helo:
            _bump(self.helos, helo.lower())
        if domain:
            # The usual domain again (nearly every message): counted without _bump()'s call.
            name = domain.lower()[:MAX_TEXT]
            if name in self.domains:
                self.domains[name] += 1
            else:
                _bump(self.domains, name)
        self.dirty = True

    def learn_foreign(self) -> None:
        """The message just learnt carried someone else's mail (`forwarding.py`)."""
        self.foreign += 1
        self.dirty = True

    def outcome(self, delivered: bool, n: int = 1) -> None:
        """`n` recipients delivered, or failed (forwarded refusals discounted excepted)."""
        if delivered:
            self.delivered += n
        else:
            self.failed += n
        if self.delivered + self.failed > MAX_OUTCOMES:
            self.delivered //= 2
            self.failed //= 2
        self.dirty = True

    def saw_list(self, identity: str, now: float) -> None:
        """A list post settled as one: remember the identity's first and latest post."""
        identity = identity[:MAX_TEXT]
        if not identity:
            return
        seen = self.lists.get(identity)
        if seen is not None:
            seen[1] = max(seen[1], now)
        else:
            if len(self.lists) >= MAX_LISTS:
                del self.lists[min(self.lists, key=lambda k: self.lists[k][1])]
            self.lists[identity] = [now, now]
        self.dirty = True

    def usual(self, names: dict[str, int], name: str) -> bool:
        return names.get(name.lower(), 0) > USUAL_SHARE * self.messages

    def departures(self, *, domain: str, authenticated: bool | None,
                   recipients_now: int, volume_factor: float, volume_min: int) -> list[str]:
        """How a message departs from this (established) baseline, phrased for the log.

        HELOs are kept for the report but not judged here: the log shows them only
        on refusals, and `replay` must reach the verdicts the live path reaches."""
        out = []
        if domain and self.domains and not self.usual(self.domains, domain):
            out.append(f"new envelope domain {domain[:60]}")
        if authenticated is False and self.authenticated > 0 and (
                self.unauthenticated <= USUAL_SHARE * self.messages):
            out.append("unauthenticated, usually authenticates")
        typical = self.typical_hour
        # Only against a finished hour of its own: a first hour has nothing to depart from.
        if typical > 0.0 and recipients_now > volume_min and recipients_now > (
                volume_factor * typical):
            out.append(f"{recipients_now} recipients this hour, typically {typical:.0f}")
        if not out:
            return out  # nearly every message of an established sender
        # A new envelope domain alone is a new alias; with another departure it is a
        # different machine or a different habit.
        names = sum(1 for d in out if d.startswith("new "))
        return out if len(out) > names else []

    # --- the store's form --------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "authenticated": self.authenticated,
                "unauthenticated": self.unauthenticated, "helos": dict(self.helos),
                "domains": dict(self.domains), "typical_hour": round(self.typical_hour, 3),
                "hour_start": self.hour_start, "hour_recipients": self.hour_recipients,
                "since": self.since, "delivered": self.delivered, "failed": self.failed,
                "foreign": self.foreign, "lists": {k: list(v) for k, v in self.lists.items()}}

    @classmethod
    def from_json(cls, data: Any) -> Baseline:
        """A stored baseline; whatever is malformed in it is dropped, never raised."""
        b = cls()
        if not isinstance(data, dict):
            return b
        for name in ("messages", "authenticated", "unauthenticated", "hour_recipients",
                     "delivered", "failed", "foreign"):
            v = data.get(name)
            if isinstance(v, int) and v >= 0:
                setattr(b, name, v)
        for name in ("typical_hour", "hour_start", "since"):
            v = data.get(name)
            if isinstance(v, int | float) and v >= 0:
                setattr(b, name, float(v))
        for name in ("helos", "domains"):
            v = data.get(name)
            if isinstance(v, dict):
                kept = {str(k)[:MAX_TEXT]: n for k, n in v.items()
                        if isinstance(n, int) and n > 0}
                best = sorted(kept.items(), key=lambda kv: -kv[1])[:MAX_NAMES]
                setattr(b, name, dict(best))
        b.lists = _stored_lists(data.get("lists"))
        return b


def _stored_lists(value: Any) -> dict[str, list[float]]:
    """Stored list identities: [first post, latest post] each; malformed ones dropped."""
    if not isinstance(value, dict):
        return {}
    kept: dict[str, list[float]] = {}
    for k, v in value.items():
        if (isinstance(v, list) and len(v) == 2
                and all(isinstance(t, int | float) and t >= 0 for t in v)):
            kept[str(k)[:MAX_TEXT]] = [float(v[0]), float(v[1])]
    best = sorted(kept.items(), key=lambda kv: -kv[1][1])[:MAX_LISTS]
    return dict(best)


class Baselines:
    """The baselines of senders the engine does not hold in memory, and those waiting to
    be written to the store.

    A sender idle long enough is forgotten from memory, but not its habits: its
    baseline waits here (bounded, least recently used dropped first) until it
    sends again. At start the store's most recent baselines are loaded here.
    """

    def __init__(self, limit: int = MAX_KEPT) -> None:
        self.limit = limit
        self._idle: OrderedDict[str, Baseline] = OrderedDict()
        # Oldest first; an OrderedDict so dropping the oldest does not walk the slots
        # earlier deletions left in a plain dict.
        self._pending: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._idle)

    def load(self, stored: dict[str, Any]) -> None:
        """Baselines read from the store (sender key -> stored form), the newest first."""
        for key, data in stored.items():
            if key not in self._idle and len(self._idle) < self.limit:
                self._idle[key] = Baseline.from_json(data)

    def take(self, key: str) -> Baseline | None:
        """The kept baseline of a sender coming back into memory, if there is one (a
        sender without one makes a new one on its first use: `SenderMemory.baseline`)."""
        return self._idle.pop(key, None)

    def keep(self, key: str, baseline: Baseline) -> None:
        """A sender forgotten from memory: keep its baseline (and write it if changed)."""
        self.collect(key, baseline)
        self._idle[key] = baseline
        self._idle.move_to_end(key)
        while len(self._idle) > self.limit:
            self._idle.popitem(last=False)

    def collect(self, key: str, baseline: Baseline) -> None:
        """Queue a changed baseline for the store."""
        if baseline.dirty:
            baseline.dirty = False
            self._pending[key] = baseline.to_json()
            while len(self._pending) > self.limit:
                self._pending.popitem(last=False)

    def drain(self) -> dict[str, dict[str, Any]]:
        pending, self._pending = self._pending, OrderedDict()
        return pending

    def restore(self, pending: dict[str, dict[str, Any]]) -> None:
        """Writing failed: keep what was drained, unless a newer form is waiting."""
        for key, data in pending.items():
            self._pending.setdefault(key, data)
