"""Notices a log feed that brings no delivery outcomes: one warning, and a /healthz detail.

A feed pointed at the wrong file, a file extrusion may not read, or syslog that
forwards nothing all look the same from inside: no outcome ever arrives, and
the core trigger (failures to distinct recipients) never fires. After
`[maillog] quiet_warning_seconds` without one, since start or since the last
one, this says so once per quiet spell. /healthz stays 200: a quiet night is
no fault, and a load balancer must not take the policy server away for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("extrusion.policyd.feed")


class QuietWatch:
    def __init__(self, clock: Callable[[], float], seconds: float, source: str,
                 where: str) -> None:
        self.clock = clock
        self.seconds = seconds
        self.source = source
        self.where = where
        self.since = clock()  # start, or the last outcome
        self.outcomes = 0
        self.last_outcome: float | None = None
        self.warned = False

    def seen(self, outcomes: int) -> None:
        """The feed's running count of outcomes (any thread: plain values)."""
        if outcomes > self.outcomes:
            self.outcomes = outcomes
            self.last_outcome = self.since = self.clock()
            self.warned = False

    def quiet_for(self) -> float:
        return max(0.0, self.clock() - self.since)

    @property
    def quiet(self) -> bool:
        return bool(self.seconds) and self.quiet_for() >= self.seconds

    def detail(self) -> str:
        what = "since start" if self.last_outcome is None else "since the last one"
        return (f"no delivery outcome from {self.where} for {self.quiet_for():.0f}s ({what}): "
                f"is it Postfix's log, can extrusion read it, is mail flowing?")

    def check(self) -> None:
        """Reactor thread, every poll: warn once per quiet spell."""
        if self.quiet and not self.warned:
            self.warned = True
            log.warning("%s", self.detail())

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source, "path": self.where, "outcomes": self.outcomes,
            "last_outcome_seconds_ago": (None if self.last_outcome is None
                                         else round(self.clock() - self.last_outcome, 1)),
            "quiet": self.quiet,
        }
        if self.quiet:
            out["detail"] = self.detail()
        return out
