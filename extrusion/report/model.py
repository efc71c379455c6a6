"""The report as data: what the abuse desk needs to act on a sender, independent of format.

The loader builds it from the store (or a replay run); the text, JSON and HTML
renderers only read it. Every string from the wire is cleaned when a record
is built (see `clean`), so no renderer can forget to and no record can hold
an unprintable string. Times are POSIX seconds; renderers choose the zone.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from extrusion.report.clean import clean, clean_evidence
from extrusion.scoring.events import State
from extrusion.scoring.schema import TEXT_LEN


class ReportOutcome(StrEnum):
    """A recipient's outcome as the report shows it."""

    DELIVERED = "delivered"  # "->" in the classic form
    FAILED = "failed"  # "!!!": bounced, rejected or expired
    PENDING = "pending"  # no final outcome yet (deferred, or not yet logged)


class Category(StrEnum):
    """What the evidence says a flagged sender is; picks the colour in the plots."""

    SPAM = "spam"
    VIRUS = "virus"
    MISCONFIGURED = "misconfigured"  # a rejection daemon: auto-replies without <>
    # An operator pinned the sender and no evidence weighs: the state is their decision.
    OPERATOR = "operator"


# States at or above this rank are "flagged": they get a full section in the report.
FLAGGED_STATES = frozenset({State.THROTTLED, State.HELD, State.BLOCKED})


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class RecipientLine:
    address: str
    delivery: ReportOutcome
    status: str = ""  # the MTA's word: sent, bounced, deferred, expired, rejected
    dsn: str = ""
    reply: str = ""  # the remote server's reply text, as logged
    time: float | None = None

    def __post_init__(self) -> None:
        _set(self, "address", clean(self.address))
        if self.dsn:
            _set(self, "dsn", clean(self.dsn))
        if self.reply:
            _set(self, "reply", clean(self.reply))


@dataclass(frozen=True, slots=True)
class MessageRecord:
    time: float
    envelope_from: str  # "" is the null sender <>
    size: int
    recipients: tuple[RecipientLine, ...]
    helo: str = ""
    helo_suspect: bool = False
    queue_id: str = ""
    mta: str = ""
    client_addr: str = ""

    def __post_init__(self) -> None:
        _set(self, "envelope_from", clean(self.envelope_from))
        _set(self, "helo", clean(self.helo))
        if self.queue_id:
            _set(self, "queue_id", clean(self.queue_id))
        if self.mta:
            _set(self, "mta", clean(self.mta))
        if self.client_addr:
            _set(self, "client_addr", clean(self.client_addr))


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of evidence the engine weighed: its kind, weight, words and data."""

    kind: str
    summary: str
    score: float = 0.0
    evidence: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "kind", clean(self.kind))
        _set(self, "summary", clean(self.summary))
        cleaned = clean_evidence(dict(self.evidence))
        assert isinstance(cleaned, dict)
        _set(self, "evidence", types.MappingProxyType(cleaned))

    @property
    def weighs(self) -> bool:
        """Whether it added to the score; one that did not is a fact, shown without a weight."""
        return self.score > 0.0


@dataclass(frozen=True, slots=True)
class Counts:
    messages: int = 0
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(frozen=True, slots=True)
class StateChangeRecord:
    """One audit-trail entry: who moved the sender from where to where, and why."""

    time: float
    old: State
    new: State
    score: float
    reason: str
    who: str = "engine"

    def __post_init__(self) -> None:
        # Audit notes are ours (the engine's, an operator's, postsuper's summary) and the
        # store already bounds them: shown whole, only escaped.
        _set(self, "reason", clean(self.reason, TEXT_LEN))
        _set(self, "who", clean(self.who))


@dataclass(frozen=True, slots=True)
class Pin:
    """An operator's pin (`extrusion hold|block|allow`): a decision, not evidence."""

    state: str  # what the pin holds the sender to: ok, held, blocked
    by: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        _set(self, "state", clean(self.state))
        _set(self, "by", clean(self.by))
        _set(self, "reason", clean(self.reason, TEXT_LEN))

    @property
    def words(self) -> str:
        who = f" by {self.by}" if self.by else ""
        why = f": {self.reason}" if self.reason else ""
        return f"pinned to {self.state}{who}{why}"


@dataclass(frozen=True, slots=True)
class HourBucket:
    """Recipients of one sender whose outcome was logged in one clock hour."""

    start: float
    delivered: int
    failed: int


@dataclass(frozen=True, slots=True)
class SenderReport:
    """Everything shown for one sender.

    `messages` may be fewer than `counts.messages` (the loader caps what is
    listed); `hourly` always covers all of the sender's recipients in the window.
    """

    key: str
    state: State
    score: float
    first_seen: float
    last_seen: float
    counts: Counts
    category: Category = Category.SPAM
    customer: str = ""
    reasons: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    messages: tuple[MessageRecord, ...] = ()
    changes: tuple[StateChangeRecord, ...] = ()
    hourly: tuple[HourBucket, ...] = ()
    pin: Pin | None = None

    def __post_init__(self) -> None:
        _set(self, "key", clean(self.key))
        _set(self, "customer", clean(self.customer))
        _set(self, "reasons", tuple(clean(r) for r in self.reasons))

    @property
    def worst(self) -> State:
        """The highest state the sender was in: now, or by the audit trail shown.

        A bot released (or decayed back to ok) is still listed for what it did;
        its current `ok, 0.0` alone would hide that."""
        worst = self.state
        for change in self.changes:
            if change.new.rank > worst.rank:
                worst = change.new
        return worst

    @property
    def worst_at(self) -> float | None:
        """When the sender first reached its worst state, if the trail shows it."""
        for change in self.changes:
            if change.new is self.worst and change.new.rank > change.old.rank:
                return change.time
        return None

    @property
    def detected_at(self) -> float | None:
        """When the engine first moved the sender into a flagged state, if it did."""
        for change in self.changes:
            if change.new in FLAGGED_STATES and change.new.rank > change.old.rank:
                return change.time
        return None

    @property
    def messages_omitted(self) -> int:
        return max(0, self.counts.messages - len(self.messages))


@dataclass(frozen=True, slots=True)
class SenderActivity:
    """One sender's activity in the window, flagged or not: the spamminess scatter."""

    key: str
    state: State
    messages: int
    recipients: int
    failed: int
    hours_active: int
    blocks_active: int  # four-hour blocks with activity, as in the sFlow analysis
    category: Category | None = None

    def __post_init__(self) -> None:
        _set(self, "key", clean(self.key))

    @property
    def spamminess(self) -> float:
        """Share of recipients that failed: 0 for clean mail, near 1 for a bot."""
        return self.failed / self.recipients if self.recipients else 0.0


@dataclass(frozen=True, slots=True)
class Report:
    """A whole report: flagged senders, misconfigured ones, and everyone's activity."""

    generated_at: float
    until: float
    since: float | None = None  # None: since the beginning of the store
    senders: tuple[SenderReport, ...] = ()
    misconfigured: tuple[SenderReport, ...] = ()
    activity: tuple[SenderActivity, ...] = ()
    source: str = ""  # where the data came from (a store URL without password, "replay")
    # [scoring] half_life_seconds the scores were decayed with (None: not known, not said).
    half_life: float | None = None

    def __post_init__(self) -> None:
        _set(self, "source", clean(self.source))
