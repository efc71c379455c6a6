"""Probation: a small budget for a sender whose mail suddenly looks different.

A bot on a customer's machine shows itself at submission (a forged freemail
sender, a made-up HELO, a sudden spread of recipients) long before the
outcomes of its spam come back. Such a sender gets `[probation] recipients`
per `window_seconds` (451 4.7.1, which a real mail client retries) until
its first outcomes are known: it leaves as soon as `release_deliveries`
distinct recipients were delivered with no more than a list's share
failing, and is throttled on its first `min_failures` failures at
`failure_share` or more. A legitimate mailshot is delayed by minutes, never
refused. Pure bookkeeping on `SenderMemory`; times come with the calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from extrusion.scoring.kinds import Kind
from extrusion.scoring.limits import SlidingCounter
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.settings import EngineSettings

BUCKET = 30.0  # seconds per bucket of the probation budget's window


@dataclass(slots=True)
class ProbationState:
    since: float
    reason: str
    budget: SlidingCounter
    delivered: set[str] = field(default_factory=set)


class Probation:
    def __init__(self, cfg: EngineSettings) -> None:
        p, s = cfg.probation, cfg.scoring
        self.enabled = p.enabled
        self.recipients = p.recipients
        self.window = p.window_seconds
        self.release_deliveries = p.release_deliveries
        self.min_failures = p.min_failures
        self.max_seconds = p.max_seconds
        self.share = s.failure_share
        self.list_share = s.list_max_failure_share
        self.vouch_seconds = s.window_seconds
        # Told of each start and end: a sender pinned `allow` by the config enters and
        # leaves probation without a change of state (the book's attention index).
        self.noted: Callable[[SenderMemory], None] = _unheard

    def enter(self, mem: SenderMemory, reason: str, now: float) -> bool:
        """Put `mem` on probation for `reason`; True when it was not on it before.

        Only a sender nothing else has judged yet: one already watched or
        throttled has a budget of its own, one pinned is the operator's, and one
        whose outcomes vouch for it (just now, or in the window) is left alone.
        """
        if (not self.enabled or mem.probation is not None or mem.pin
                or mem.vouched_until > now or mem.state.rank > 1):
            return False
        attempted = mem.attempted.count(now)
        if (attempted >= self.release_deliveries
                and mem.failed.count(now) <= self.list_share * attempted):
            return False  # its outcomes are back and look legitimate already
        mem.probation = ProbationState(now, reason, SlidingCounter(self.window, BUCKET))
        mem.note(Kind.PROBATION, now, example=reason, active=True, since=now)
        self.noted(mem)
        return True

    def over_budget(self, mem: SenderMemory, recipients: int, now: float) -> int | None:
        """The recipients already counted when `recipients` more would break the budget."""
        p = mem.probation
        if p is None:
            return None
        # What the other hosts of a shared store let it send counts too (shared.py).
        elsewhere = mem.rates.others.recipients_recent if mem.rates is not None else 0
        current = p.budget.value(now) + elsewhere
        return current if current + recipients > self.recipients else None

    def consume(self, mem: SenderMemory, recipients: int, now: float) -> None:
        if mem.probation is not None and recipients > 0:
            mem.probation.budget.add(recipients, now)

    def delivered(self, mem: SenderMemory, rcpt: str, failed: int, attempted: int,
                  now: float) -> bool:
        """A recipient delivered; True when this ends the probation (outcomes look good)."""
        p = mem.probation
        if p is None:
            return False
        if len(p.delivered) < self.release_deliveries:
            p.delivered.add(rcpt.lower())
        if (len(p.delivered) >= self.release_deliveries
                and failed <= self.list_share * max(attempted, 1)):
            share = failed / max(attempted, 1)
            self._leave(mem, now, f"{len(p.delivered)} recipients delivered, "
                                  f"{share:.0%} failing")
            mem.vouched_until = now + self.vouch_seconds
            return True
        return False

    def failure(self, mem: SenderMemory, failed: int, attempted: int, now: float) -> bool:
        """A failure counted; True when it throttles a sender on probation."""
        if mem.probation is None:
            return False
        if failed >= self.min_failures and failed >= self.share * max(attempted, 1):
            self._leave(mem, now, f"{failed} of {attempted} recipients failed")
            return True
        return False

    def expire(self, mem: SenderMemory, now: float) -> bool:
        """Probation that outlived `max_seconds` without a verdict ends by itself."""
        p = mem.probation
        if p is None or now - p.since < self.max_seconds:
            return False
        self._leave(mem, now, f"no verdict from outcomes in {self.max_seconds:.0f} s")
        return True

    def _leave(self, mem: SenderMemory, now: float, why: str) -> None:
        mem.probation = None
        mem.probation_end = f"probation ended: {why}"
        mem.note(Kind.PROBATION, now, active=False, ended=why)
        self.noted(mem)


def _unheard(mem: SenderMemory) -> None:
    pass
