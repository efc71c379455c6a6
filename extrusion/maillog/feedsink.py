"""What `LogFeed` hands its events to: the engine's side of the feed, its counters, and
the guard that keeps an engine's failure from stopping the feed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from extrusion.maillog.join import JoinStats
from extrusion.scoring.events import ClientEvidence, Outcome, Refused, Submission

log = logging.getLogger("extrusion.maillog.feed")  # the feed's logger, as before the split
_E = TypeVar("_E")


class FeedEngine(Protocol):
    """The part of `extrusion.scoring.api.EngineAPI` the feed uses."""

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str: ...

    def submission(self, event: Submission) -> None: ...

    def outcome(self, event: Outcome) -> None: ...

    def refused(self, event: Refused) -> None: ...

    def evidence(self, event: ClientEvidence) -> None: ...


@dataclass
class FeedStats:
    lines: int = 0
    parsed: int = 0  # lines that gave at least one record
    ignored: int = 0  # readable lines of no interest (other programs, connect/TLS/…)
    garbled: int = 0  # lines that could not be read: counted and skipped
    too_long: int = 0  # of the garbled: longer than lines.MAX_LINE
    parser_errors: int = 0  # of the garbled: a parser raised on them (a bug)
    engine_errors: int = 0
    outcomes: int = 0  # delivery outcomes handed to the engine (a live feed's sign of life)
    examples: list[str] = field(default_factory=list)  # the first few garbled, escaped
    join: JoinStats = field(default_factory=JoinStats)


class GuardedSink:
    """Calls into the engine; a failure there is counted and logged, never lost silently."""

    def __init__(self, engine: FeedEngine, stats: FeedStats, guard: bool) -> None:
        self.engine = engine
        self.stats = stats
        self.guard = guard

    def submission(self, event: Submission) -> None:
        self._call(self.engine.submission, event)

    def outcome(self, event: Outcome) -> None:
        self.stats.outcomes += 1
        self._call(self.engine.outcome, event)

    def refused(self, event: Refused) -> None:
        self._call(self.engine.refused, event)

    def evidence(self, event: ClientEvidence) -> None:
        self._call(self.engine.evidence, event)

    def _call(self, method: Callable[[_E], None], event: _E) -> None:
        if not self.guard:
            method(event)
            return
        try:
            method(event)
        except Exception:  # the engine's outage must not stop the log feed
            self.stats.engine_errors += 1
            n = self.stats.engine_errors
            if n in (1, 10, 100, 1000) or not n % 10000:  # logged, not flooded
                log.exception("engine refused an event (%d so far)", n)
