"""Shared by the maillog tests: an event recorder standing in for the engine's recording side."""

from __future__ import annotations

from collections.abc import Iterable

from extrusion.maillog.feed import LogFeed
from extrusion.maillog.join import JoinSettings
from extrusion.scoring.events import ClientEvidence, Outcome, Submission

# 2026-12-01 00:00 UTC: the year anchor for classic syslog stamps in the samples.
REFERENCE = 1796083200.0


class Recorder:
    """Keeps every event; keys senders as the engine does without a customer map."""

    def __init__(self) -> None:
        self.submissions: list[Submission] = []
        self.outcomes: list[Outcome] = []
        self.events: list[Submission | Outcome] = []
        self.evidence_seen: list[ClientEvidence] = []

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        return f"sasl:{sasl_user}" if sasl_user else f"ip:{client_addr}"

    def submission(self, event: Submission) -> None:
        self.submissions.append(event)
        self.events.append(event)

    def outcome(self, event: Outcome) -> None:
        self.outcomes.append(event)
        self.events.append(event)

    def evidence(self, event: ClientEvidence) -> None:
        self.evidence_seen.append(event)


def feed_lines(rec: Recorder, lines: Iterable[str], finish: bool = True,
               **settings: object) -> LogFeed:
    feed = LogFeed(rec, settings=JoinSettings(**settings),  # type: ignore[arg-type]
                   reference_time=REFERENCE, tz=None)
    for line in lines:
        feed.line(line)
    if finish:
        feed.finish()
    return feed
