"""Plain records that travel between the engine and the store (and through the spool).

Everything here is JSON-serialisable by `Batch.to_json()` so that a batch the
store could not take is written to the local spool exactly as it would have
gone to the database, and replayed later unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# A pin operation carried by a SenderDelta.
PIN_SET = "set"
PIN_CLEAR = "clear"


def decay(value: float, elapsed: float, half_life: float) -> float:
    """`value` after `elapsed` seconds of exponential decay; never negative.

    A clock running backwards (events replayed out of order) does not grow
    the value: negative elapsed time counts as none.
    """
    if value <= 0.0:
        return 0.0
    if elapsed <= 0.0 or half_life <= 0.0:
        return value
    return value * math.exp(-elapsed * math.log(2) / half_life)


@dataclass(frozen=True, slots=True)
class SenderRow:
    """A sender as stored: its score is `score` at `score_time` (decay it to now)."""

    key: str
    cls: str = "default"
    state: str = "ok"
    score: float = 0.0
    score_time: float = 0.0
    first_seen: float = 0.0
    last_seen: float = 0.0
    state_since: float = 0.0
    pinned: str | None = None
    pinned_by: str | None = None
    pinned_reason: str | None = None
    findings: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    changed_at: float = 0.0

    def score_at(self, now: float, half_life: float) -> float:
        return decay(self.score, now - self.score_time, half_life)


@dataclass(slots=True)
class SenderDelta:
    """What one process learnt about a sender since it last wrote it.

    `score_delta` is the score this process added, valued at `time`; the
    store adds it to the stored score so several processes' evidence sums up.
    `state` is set only when this process moved the sender itself.
    """

    key: str
    time: float
    score_delta: float = 0.0
    cls: str | None = None
    first_seen: float | None = None
    state: str | None = None
    state_since: float | None = None
    reset_score: bool = False
    findings: dict[str, Any] | None = None
    # The writer had not read the stored findings yet (a sender new to its memory, or
    # one the sender cap forgot): its findings add to the stored ones, not replace them.
    add_findings: bool = False
    pin: str | None = None  # PIN_SET, PIN_CLEAR or None
    pinned: str | None = None
    pinned_by: str | None = None
    pinned_reason: str | None = None
    # {finding: [count, weight]} this process noted since it last wrote `findings`: the
    # store adds them to what every process noted (None: files spooled before, the CLI).
    added: dict[str, list[float]] | None = None

    def absorb(self, later: SenderDelta, half_life: float) -> None:
        """Fold a later delta for the same sender into this one."""
        if later.reset_score:
            self.score_delta = 0.0
            self.reset_score = True
        self.score_delta = (
            decay(self.score_delta, later.time - self.time, half_life) + later.score_delta
        )
        self.time = max(self.time, later.time)
        if later.added is not None:
            mine = self.added if self.added is not None else {}
            self.added = {k: [mine.get(k, [0, 0])[i] + later.added.get(k, [0, 0])[i]
                              for i in (0, 1)] for k in {*mine, *later.added}}
        for name in ("cls", "state", "state_since", "findings"):
            if (value := getattr(later, name)) is not None:
                setattr(self, name, value)
        if later.findings is not None:
            self.add_findings = later.add_findings  # its findings hold the earlier ones
        if self.first_seen is None:
            self.first_seen = later.first_seen
        if later.pin is not None:
            self.pin, self.pinned = later.pin, later.pinned
            self.pinned_by, self.pinned_reason = later.pinned_by, later.pinned_reason


@dataclass(frozen=True, slots=True)
class StoredRecipient:
    """One row of a recipient's history, as a report or a lookup reads it back."""

    time: float
    recipient: str
    status: str
    outcome_class: str = ""
    dsn: str = ""
    reply: str = ""
    relay: str = ""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A submitted message as read back from the store, with its recipients' rows when
    read for a report (`report.model.MessageRecord` is the report's own view)."""

    time: float
    mta: str
    queue_id: str
    sender: str
    envelope_from: str = ""
    helo: str = ""
    client_addr: str = ""
    client_name: str = ""
    size: int = 0
    rcpt_count: int = 0
    message_id: str = ""
    null_sender: bool = False
    auto_reply: bool = False
    list_like: bool = False
    list_id: str = ""
    recipients: tuple[StoredRecipient, ...] = ()


@dataclass(frozen=True, slots=True)
class OverrideRow:
    match: str
    action: str
    limits: str = ""
    reason: str = ""
    who: str = ""
    created: float = 0.0


class MessageRow(NamedTuple):
    """A `messages` row as written (a tuple: a flush writes tens of thousands, and the
    driver takes it as it is). Its fields are the table's columns, in writing order."""

    time: float
    mta: str
    queue_id: str
    sender: str
    envelope_from: str = ""
    helo: str = ""
    client_addr: str = ""
    client_name: str = ""
    size: int = 0
    rcpt_count: int = 0
    message_id: str = ""
    null_sender: bool = False
    auto_reply: bool = False
    list_like: bool = False
    list_id: str = ""

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> MessageRow:
        """A dict row (a spooled batch, another writer): missing columns defaulted."""
        return cls(**_known(cls._fields, row, DICT_DEFAULTS[cls]))


class RecipientRow(NamedTuple):
    """A `recipients` row as written: a "queued" one per recipient at submission, one
    per outcome. Its fields are the table's columns, in writing order."""

    time: float
    mta: str
    queue_id: str
    sender: str
    recipient: str
    status: str
    outcome_class: str = ""
    dsn: str = ""
    reply: str = ""
    relay: str = ""

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> RecipientRow:
        """A dict row (a spooled batch, another writer): missing columns defaulted."""
        return cls(**_known(cls._fields, row, DICT_DEFAULTS[cls]))


# A dict row may leave out these leading columns too (the tuples' defaults cover the rest).
DICT_DEFAULTS: dict[type, dict[str, Any]] = {
    MessageRow: {"mta": ""}, RecipientRow: {"mta": "", "sender": ""}}


def _known(fields: tuple[str, ...], row: Mapping[str, Any],
           defaults: dict[str, Any]) -> dict[str, Any]:
    """The row's values of `fields` (others ignored), `defaults` under them."""
    return {**defaults, **{f: row[f] for f in fields if f in row}}


MESSAGE_COLUMNS: tuple[str, ...] = MessageRow._fields
RECIPIENT_COLUMNS: tuple[str, ...] = RecipientRow._fields
COUNTER_BUCKET = 60  # seconds per counters row
QUEUED = "queued"  # a recipient's status as its message is submitted


def counter_bucket(t: float) -> int:
    """The start of the counters bucket `t` falls in."""
    return int(t // COUNTER_BUCKET) * COUNTER_BUCKET


@dataclass(slots=True)
class Batch:
    """One transaction's worth of writes.

    Message and recipient rows come in two forms: dicts keyed by column name
    (`messages`, `recipients`: any writer, a spooled batch; missing columns take
    their defaults) and typed rows (`message_rows`, `recipient_rows`: the
    engine's, which queues one or more per event and goes straight to the driver
    without a dict per row). Dict rows are written before typed rows.
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    recipients: list[dict[str, Any]] = field(default_factory=list)
    # (sender, counter name, bucket start) -> amount to add
    counters: dict[tuple[str, str, int], float] = field(default_factory=dict)
    state_changes: list[dict[str, Any]] = field(default_factory=list)
    senders: dict[str, SenderDelta] = field(default_factory=dict)
    message_rows: list[MessageRow] = field(default_factory=list)
    recipient_rows: list[RecipientRow] = field(default_factory=list)
    # (sender, mta, bucket start) -> [recipients, messages] a host let a restricted
    # sender send (scoring/shared.py)
    rate_use: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return (
            len(self.messages) + len(self.recipients) + len(self.counters)
            + len(self.state_changes) + len(self.senders)
            + len(self.message_rows) + len(self.recipient_rows) + len(self.rate_use)
        )

    def latest(self) -> float:
        """The latest time among the batch's rows (0.0 if none has one): the day its
        names are marked seen (names.py)."""
        t = float(max((b for _, _, b in self.counters), default=0))
        for typed in (self.message_rows, self.recipient_rows):
            t = max(t, max((r.time for r in typed), default=0.0))
        for rows in (self.messages, self.recipients):
            t = max(t, max((float(r.get("time") or 0.0) for r in rows), default=0.0))
        return t

    def add_use(self, sender: str, mta: str, bucket: int, recipients: int,
                messages: int) -> None:
        use = self.rate_use.setdefault((sender, mta, bucket), [0, 0])
        use[0] += recipients
        use[1] += messages

    def all_messages(self) -> list[dict[str, Any]]:
        """Every message row as a dict, in writing order."""
        return [*self.messages, *(r._asdict() for r in self.message_rows)]

    def all_recipients(self) -> list[dict[str, Any]]:
        """Every recipient row as a dict, in writing order."""
        return [*self.recipients, *(r._asdict() for r in self.recipient_rows)]

    def add_counter(self, sender: str, name: str, bucket: int, amount: float = 1.0) -> None:
        k = (sender, name, bucket)
        self.counters[k] = self.counters.get(k, 0.0) + amount

    def add_sender(self, delta: SenderDelta, half_life: float) -> None:
        if (mine := self.senders.get(delta.key)) is None:
            self.senders[delta.key] = delta
        else:
            mine.absorb(delta, half_life)

    def to_json(self) -> str:
        return json.dumps(
            {
                # The spool keeps the dict form: files written before typed rows existed
                # and files written now read back the same.
                "messages": self.all_messages(),
                "recipients": self.all_recipients(),
                "counters": [[s, n, b, v] for (s, n, b), v in self.counters.items()],
                "state_changes": self.state_changes,
                "senders": [dataclasses.asdict(d) for d in self.senders.values()],
                "rate_use": [[s, m, b, r, n] for (s, m, b), (r, n) in self.rate_use.items()],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Batch:
        data = json.loads(text)
        return cls(
            messages=list(data["messages"]),
            recipients=list(data["recipients"]),
            counters={(s, n, int(b)): float(v) for s, n, b, v in data["counters"]},
            state_changes=list(data["state_changes"]),
            senders={d["key"]: SenderDelta(**d) for d in data["senders"]},
            # Absent from files spooled before shared budgets existed.
            rate_use={(s, m, int(b)): [int(r), int(n)]
                      for s, m, b, r, n in data.get("rate_use", [])},
        )


# A typed row from every field, in order, without the named tuple's Python-level
# constructor: a third of its cost, for the rows the engine records per event.
make_row = tuple.__new__
