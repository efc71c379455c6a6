"""An engine that counts what the log feed hands it and keeps nothing.

The benchmarks that time the parser and joiner alone (flood.py, mxlog.py,
pyfloor.py, crashsafe.py) give the feed this instead of the scoring engine; the counts let a
run check that the trees it compares produced the same events.
"""

from __future__ import annotations

from typing import Any


class CountingEngine:
    """The calls `LogFeed` makes of an engine, each counted and dropped."""

    def __init__(self) -> None:
        self.events = 0  # submissions, outcomes and refusals
        self.evidence_events = 0

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        return f"sasl:{sasl_user}" if sasl_user else f"ip:{client_addr}"

    def submission(self, event: Any) -> None:
        self.events += 1

    def outcome(self, event: Any) -> None:
        self.events += 1

    def refused(self, event: Any) -> None:
        self.events += 1

    def evidence(self, event: Any) -> None:
        self.evidence_events += 1

    def flush(self) -> None:
        pass

    def unresolved_outcomes(self) -> list[Any]:
        return []
