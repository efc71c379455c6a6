"""Builds the report model from the live store (SQLite or PostgreSQL) or a replay's store.

Which senders: those in a flagged state (throttled, held, blocked) or moved
into one during the window, plus rejection daemons (the misconfigured
section); `--sender` asks for one sender whatever its state. For each: the
stored findings in plain words, the audit trail, every message in the window
with each recipient's final outcome (the latest non-queued row), and
recipients per hour. Counts always cover the whole window; only the listing
is capped (`report.max_messages_per_sender`, most recent messages).
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from extrusion.report import words
from extrusion.report.model import (
    FLAGGED_STATES,
    Category,
    Counts,
    Delivery,
    HourBucket,
    MessageRecord,
    RecipientLine,
    Report,
    SenderActivity,
    SenderReport,
    StateChangeRecord,
)
from extrusion.scoring import schema
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.helo import helo_anomalies
from extrusion.scoring.rows import MessageRecord as StoredMessage
from extrusion.scoring.rows import RecipientRecord, SenderRow
from extrusion.scoring.store import Store, StoreError

HOUR = 3600
BLOCK = 4 * HOUR  # the four-hour blocks of the sFlow analysis
DELIVERED_STATUSES = frozenset({"sent"})
FAILED_STATUSES = frozenset({"bounced", "expired", "rejected"})
QUEUED = "queued"  # the row the engine writes for each recipient at submission
CUSTOMER_PREFIX = "customer:"
# How far back a notification's evidence reaches, and how many messages it lists:
# a mail to the abuse desk should be read in a minute, the full report is a command away.
NOTIFY_EVIDENCE_SECONDS = 86400.0
NOTIFY_MESSAGES_PER_SENDER = 10


class ReportError(Exception):
    """A report that cannot be made as asked (unknown sender, bad filter); for the user."""


@dataclass(frozen=True)
class Query:
    """What to report on. Times are event times (a replay's are the log's own)."""

    until: float
    since: float | None = None  # None: everything in the store
    sender: str | None = None
    state: State | None = None
    max_messages: int = 200  # messages listed per sender; 0 = all
    half_life: float = 3600.0  # to decay stored scores to `until`
    own_domains: tuple[str, ...] = ()  # for judging HELOs as the engine does


def _customer(key: str) -> str:
    return key[len(CUSTOMER_PREFIX):] if key.startswith(CUSTOMER_PREFIX) else ""


@functools.lru_cache(maxsize=65536)
def _suspect(helo: str, client_addr: str, client_name: str, envelope_from: str,
             recipients: tuple[str, ...], own_domains: tuple[str, ...]) -> bool:
    """Whether the engine's own HELO judgement finds anything wrong with this HELO."""
    if not helo:
        return False
    return bool(helo_anomalies((helo,), client_addr, client_name, envelope_from, recipients,
                               own_domains))


def _final(rows: Iterable[RecipientRecord]) -> dict[str, RecipientRecord | None]:
    """Each recipient (in order of first appearance) with its latest outcome row, if any."""
    out: dict[str, RecipientRecord | None] = {}
    for r in rows:  # the store returns them oldest first
        if r.status == QUEUED:
            out.setdefault(r.recipient, None)
        else:
            out[r.recipient] = r
    return out


def _delivery(status: str) -> Delivery:
    if status in DELIVERED_STATUSES:
        return Delivery.DELIVERED
    if status in FAILED_STATUSES:
        return Delivery.FAILED
    return Delivery.PENDING


@dataclass
class _Tally:
    messages: int = 0
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0

    def counts(self) -> Counts:
        return Counts(self.messages, self.recipients, self.delivered, self.failed, self.pending)


def _messages(
    stored: Sequence[StoredMessage], q: Query, judge_helo: bool = True
) -> tuple[tuple[MessageRecord, ...], Counts, tuple[HourBucket, ...]]:
    """The listed messages, the counts over all of them, and outcomes per hour.

    `judge_helo` False skips the HELO judgement: the engine found no HELO
    anomaly for this sender, so none of its HELOs is suspect.
    """
    tally = _Tally(messages=len(stored))
    hours: dict[float, list[int]] = defaultdict(lambda: [0, 0])
    listed = stored[-q.max_messages:] if q.max_messages else stored
    first_listed = len(stored) - len(listed)
    out = []
    for i, m in enumerate(stored):
        final = _final(m.recipients)
        lines = []
        for address, row in final.items():
            delivery = _delivery(row.status) if row is not None else Delivery.PENDING
            tally.recipients += 1
            if delivery is Delivery.DELIVERED:
                tally.delivered += 1
            elif delivery is Delivery.FAILED:
                tally.failed += 1
            else:
                tally.pending += 1
            if row is not None and delivery is not Delivery.PENDING:
                hours[row.time - row.time % HOUR][delivery is Delivery.FAILED] += 1
            if i >= first_listed:
                lines.append(
                    RecipientLine(address, delivery, row.status, row.dsn, row.reply, row.time)
                    if row is not None
                    else RecipientLine(address, delivery, QUEUED)
                )
        if i >= first_listed:
            suspect = judge_helo and _suspect(
                m.helo, m.client_addr, m.client_name, m.envelope_from, tuple(final),
                q.own_domains,
            )
            out.append(MessageRecord(
                m.time, m.envelope_from, m.size, tuple(lines), helo=m.helo,
                helo_suspect=suspect, queue_id=m.queue_id, mta=m.mta, client_addr=m.client_addr,
            ))
    buckets = tuple(HourBucket(h, d, f) for h, (d, f) in sorted(hours.items()))
    return tuple(out), tally.counts(), buckets


def _change_record(ch: StateChange) -> StateChangeRecord:
    return StateChangeRecord(ch.time, ch.old, ch.new, ch.score, ch.reason, ch.who)


def sender_report(store: Store, row: SenderRow, changes: Sequence[StateChange],
                  q: Query) -> SenderReport:
    """One sender's section, read from the store."""
    stored = store.messages(row.key, q.since or 0.0, q.until)
    messages, counts, hourly = _messages(stored, q, words.HELO in (row.findings or {}))
    found = words.findings(row.findings or {})
    state = State(row.state)
    return SenderReport(
        key=row.key,
        state=state,
        score=row.score_at(q.until, q.half_life),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        counts=counts,
        category=words.category(row.findings or {}, flagged=state in FLAGGED_STATES),
        customer=_customer(row.key),
        reasons=words.reasons(
            found, row.pinned, row.pinned_by, row.pinned_reason,
            [ch.reason for ch in changes if ch.new in FLAGGED_STATES],
        ),
        findings=found,
        messages=messages,
        changes=tuple(_change_record(ch) for ch in changes),
        hourly=hourly,
    )


def _in_window(row: SenderRow, changes: Sequence[StateChange], q: Query) -> bool:
    if q.since is None:
        return True
    return row.last_seen >= q.since or row.state_since >= q.since or bool(changes)


def _candidates(store: Store, q: Query, changes: dict[str, list[StateChange]]) -> list[SenderRow]:
    if q.sender is not None:
        row = store.sender(q.sender)
        if row is None:
            raise ReportError(f"no sender {q.sender!r} in the store")
        return [row]
    rows: dict[str, SenderRow] = {}
    states = [q.state] if q.state is not None else sorted(FLAGGED_STATES, key=lambda s: s.rank)
    for state in states:
        for row in store.senders(state.value):
            rows[row.key] = row
    if q.state is None:
        # Flagged during the window even if released since, and rejection daemons.
        flagged_then = {k for k, chs in changes.items()
                        if any(ch.new in FLAGGED_STATES for ch in chs)}
        for row in store.senders():
            if row.key in flagged_then or words.is_rejection_daemon(row.findings or {}):
                rows.setdefault(row.key, row)
    return [r for r in rows.values() if _in_window(r, changes.get(r.key, ()), q)]


def _changes(store: Store, q: Query) -> dict[str, list[StateChange]]:
    by_sender: dict[str, list[StateChange]] = defaultdict(list)
    for ch in store.state_changes(q.sender, since=q.since, until=q.until):
        by_sender[ch.sender].append(ch)
    return by_sender


def _hour_expr(dialect: str, column: Any, seconds: int) -> Any:
    # PostgreSQL's CAST rounds, SQLite's truncates; both floor for positive times.
    if dialect == "postgresql":
        return sa.func.floor(column / seconds)
    return sa.cast(column / seconds, sa.Integer)


def activity(store: Store, q: Query,
             categories: dict[str, Category] | None = None) -> tuple[SenderActivity, ...]:
    """Every sender's volume, failures and hours active in the window (the scatter plot)."""
    m, r = schema.messages, schema.recipients
    since = q.since if q.since is not None else float("-inf")
    window_m = sa.and_(m.c.time >= since, m.c.time <= q.until)
    per_sender = (
        sa.select(
            m.c.sender,
            sa.func.count().label("messages"),
            sa.func.coalesce(sa.func.sum(m.c.rcpt_count), 0).label("recipients"),
            sa.func.count(sa.distinct(_hour_expr(store.dialect, m.c.time, HOUR))).label("hours"),
            sa.func.count(sa.distinct(_hour_expr(store.dialect, m.c.time, BLOCK))).label(
                "blocks"),
        )
        .where(window_m)
        .group_by(m.c.sender)
    )
    failures = (
        sa.select(r.c.sender, sa.func.count().label("failed"))
        .where(r.c.time >= since, r.c.time <= q.until, r.c.status.in_(sorted(FAILED_STATUSES)))
        .group_by(r.c.sender)
    )
    states = {row.key: State(row.state) for row in store.senders()}
    # The store has no public query for aggregates over all senders; this reads
    # through its connection so an in-memory replay store is seen too.
    with store._read() as conn:
        failed = {row.sender: int(row.failed) for row in conn.execute(failures)}
        rows = list(conn.execute(per_sender))
    cats = categories or {}
    return tuple(
        SenderActivity(
            row.sender, states.get(row.sender, State.OK), int(row.messages),
            int(row.recipients), min(failed.get(row.sender, 0), int(row.recipients)),
            int(row.hours), int(row.blocks), cats.get(row.sender),
        )
        for row in rows
    )


def load_report(store: Store, q: Query, *, source: str = "",
                generated_at: float | None = None, with_activity: bool = True) -> Report:
    """The whole report for `q`, read from `store`."""
    changes = _changes(store, q)
    flagged: list[SenderReport] = []
    misconfigured: list[SenderReport] = []
    for row in _candidates(store, q, changes):
        s = sender_report(store, row, changes.get(row.key, ()), q)
        (misconfigured if s.category is Category.MISCONFIGURED else flagged).append(s)
    flagged.sort(key=lambda s: (-s.state.rank, -s.score, s.key))
    misconfigured.sort(key=lambda s: (-s.counts.failed, s.key))
    cats = {s.key: s.category for s in (*flagged, *misconfigured)}
    return Report(
        generated_at=generated_at if generated_at is not None else time.time(),
        until=q.until,
        since=q.since,
        senders=tuple(flagged),
        misconfigured=tuple(misconfigured),
        activity=activity(store, q, cats) if with_activity and q.sender is None else (),
        source=source,
    )


def report_for_senders(store: Store, keys: Sequence[str], q: Query) -> Report:
    """Reports for just these senders, in this order (a notification's evidence)."""
    changes = _changes(store, q)
    senders = []
    for key in keys:
        row = store.sender(key)
        if row is not None:
            senders.append(sender_report(store, row, changes.get(key, ()), q))
    return Report(generated_at=time.time(), until=q.until, since=q.since,
                  senders=tuple(senders))


def notification_builder(store: Store, *, half_life: float = 3600.0,
                         own_domains: tuple[str, ...] = (),
                         clock: Callable[[], float] = time.time
                         ) -> Callable[[Sequence[str]], Report]:
    """What the notifier calls (from its worker thread) for a digest's evidence."""

    def build(keys: Sequence[str]) -> Report:
        now = clock()
        q = Query(until=now, since=now - NOTIFY_EVIDENCE_SECONDS,
                  max_messages=NOTIFY_MESSAGES_PER_SENDER, half_life=half_life,
                  own_domains=own_domains)
        return report_for_senders(store, keys, q)

    return build


__all__ = [
    "Query",
    "ReportError",
    "StoreError",
    "activity",
    "load_report",
    "notification_builder",
    "report_for_senders",
    "sender_report",
]
