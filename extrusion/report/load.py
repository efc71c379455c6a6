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

from extrusion.report import words
from extrusion.report.model import (
    FLAGGED_STATES,
    Category,
    Counts,
    HourBucket,
    MessageRecord,
    Pin,
    RecipientLine,
    Report,
    ReportOutcome,
    SenderActivity,
    SenderReport,
    StateChangeRecord,
)
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.helo import helo_anomalies
from extrusion.scoring.kinds import Kind
from extrusion.scoring.reportreads import (
    DELIVERED_STATUSES,
    FAILED_STATUSES,
    ListedMessage,
    RecipientHistory,
    SenderTotals,
)
from extrusion.scoring.rows import SenderRow
from extrusion.scoring.store import Store, StoreError
from extrusion.scoring.sync import ENGINE

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


def _final(rows: Iterable[RecipientHistory]) -> dict[str, RecipientHistory | None]:
    """Each recipient with its latest outcome row: those with an outcome in order of
    their first one, then those still waiting (the store keeps a recipient's "queued"
    row only until its outcome comes, so submission order is no longer known)."""
    out: dict[str, RecipientHistory | None] = {}
    waiting: list[str] = []
    for r in rows:  # oldest first
        if r.status == QUEUED:
            waiting.append(r.recipient)
        else:
            out[r.recipient] = r
    for recipient in waiting:
        out.setdefault(recipient, None)
    return out


def _delivery(status: str) -> ReportOutcome:
    if status in DELIVERED_STATUSES:
        return ReportOutcome.DELIVERED
    if status in FAILED_STATUSES:
        return ReportOutcome.FAILED
    return ReportOutcome.PENDING


def _messages(
    fetched: Sequence[tuple[ListedMessage, list[RecipientHistory]]], q: Query,
    judge_helo: bool = True,
) -> tuple[MessageRecord, ...]:
    """The listed messages, each recipient with its final outcome.

    `judge_helo` False skips the HELO judgement: the engine found no HELO
    anomaly for this sender, so none of its HELOs is suspect.
    """
    out = []
    for m, rows in fetched:
        final = _final(rows)
        lines = tuple(
            RecipientLine(address, _delivery(row.status), row.status, row.dsn, row.reply, row.time)
            if row is not None
            else RecipientLine(address, ReportOutcome.PENDING, QUEUED)
            for address, row in final.items()
        )
        suspect = judge_helo and _suspect(
            m.helo, m.client_addr, m.client_name, m.envelope_from, tuple(final), q.own_domains
        )
        out.append(MessageRecord(
            m.time, m.envelope_from, m.size, lines, helo=m.helo, helo_suspect=suspect,
            queue_id=m.queue_id, mta=m.mta, client_addr=m.client_addr,
        ))
    return tuple(out)


def _counts(t: SenderTotals | None) -> Counts:
    if t is None:
        return Counts()
    # A recipient has at most one final row; the rest have none yet (or were never logged).
    pending = max(t.recipients - t.delivered - t.failed, 0)
    return Counts(t.messages, max(t.recipients, t.delivered + t.failed), t.delivered, t.failed,
                  pending)


def _change_record(ch: StateChange) -> StateChangeRecord:
    return StateChangeRecord(ch.time, ch.old, ch.new, ch.score, ch.reason, ch.who)


def sender_report(store: Store, row: SenderRow, changes: Sequence[StateChange], q: Query,
                  totals: SenderTotals | None = None) -> SenderReport:
    """One sender's section, read from the store (`totals` from `Store.report_totals`)."""
    if totals is None:
        totals = store.report_totals(q.since, q.until, [row.key],
                                per_hour_for=[row.key]).get(row.key)
    fetched = store.listed_messages(row.key, q.since, q.until, q.max_messages)
    messages = _messages(fetched, q, Kind.HELO_ANOMALIES in (row.findings or {}))
    found = words.findings(row.findings or {})
    state = State(row.state)
    hourly = tuple(
        HourBucket(h, d, f) for h, (d, f) in sorted((totals.per_hour if totals else {}).items())
    )
    return SenderReport(
        key=row.key,
        state=state,
        score=row.score_at(q.until, q.half_life),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        counts=_counts(totals),
        category=words.category(row.findings or {}, flagged=state in FLAGGED_STATES,
                                pinned=bool(row.pinned)),
        customer=_customer(row.key),
        reasons=words.reasons(
            # The engine's own reasons only: an operator's change is their action (`pin`).
            found, state,
            [ch.reason for ch in changes if ch.new in FLAGGED_STATES and ch.who == ENGINE],
        ),
        pin=Pin(row.pinned, row.pinned_by or "", row.pinned_reason or "") if row.pinned else None,
        findings=found,
        messages=messages,
        changes=tuple(_change_record(ch) for ch in changes),
        hourly=hourly,
    )


def _in_window(row: SenderRow, changes: Sequence[StateChange], q: Query) -> bool:
    if q.since is None:
        return True
    return row.last_seen >= q.since or row.state_since >= q.since or bool(changes)


def _candidates(store: Store, q: Query, changes: dict[str, list[StateChange]],
                all_rows: dict[str, SenderRow]) -> list[SenderRow]:
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
        for row in all_rows.values():
            if row.key in flagged_then or words.is_rejection_daemon(row.findings or {}):
                rows.setdefault(row.key, row)
        # Own customers seen from outside (mx mode) are shown even at `watch`.
        for row in store.senders(State.WATCH.value):
            if words.seen_from_outside(row.findings):
                rows.setdefault(row.key, row)
    return [r for r in rows.values() if _in_window(r, changes.get(r.key, ()), q)]


def _changes(store: Store, q: Query) -> dict[str, list[StateChange]]:
    by_sender: dict[str, list[StateChange]] = defaultdict(list)
    for ch in store.state_changes(q.sender, since=q.since, until=q.until):
        by_sender[ch.sender].append(ch)
    return by_sender


def _activity(rows: dict[str, SenderRow], all_totals: dict[str, SenderTotals],
              categories: dict[str, Category]) -> tuple[SenderActivity, ...]:
    """Every sender active in the window, flagged or not: the spamminess scatter."""
    out = []
    for key, t in sorted(all_totals.items()):
        if not t.messages:
            continue  # outcomes only (the submission fell before the window)
        row = rows.get(key)
        out.append(SenderActivity(
            key, State(row.state) if row is not None else State.OK, t.messages,
            max(t.recipients, t.failed + t.delivered), t.failed, t.hours, t.blocks,
            categories.get(key),
        ))
    return tuple(out)


def load_report(store: Store, q: Query, *, source: str = "",
                generated_at: float | None = None, with_activity: bool = True) -> Report:
    """The whole report for `q`, read from `store`."""
    changes = _changes(store, q)
    all_rows = {row.key: row for row in store.senders()} if q.sender is None else {}
    chosen = _candidates(store, q, changes, all_rows)
    keys = [row.key for row in chosen]
    everyone = with_activity and q.sender is None
    all_totals = store.report_totals(q.since, q.until, None if everyone else keys,
                                per_hour_for=keys)
    if q.sender is not None:
        # One sender's page plots that sender alone: without it the scatter read
        # "no activity" beside a sender with 120 messages.
        all_rows = {row.key: row for row in chosen}
    flagged: list[SenderReport] = []
    misconfigured: list[SenderReport] = []
    for row in chosen:
        s = sender_report(store, row, changes.get(row.key, ()), q,
                          all_totals.get(row.key, SenderTotals()))
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
        activity=_activity(all_rows, all_totals, cats) if with_activity else (),
        source=source,
        half_life=q.half_life,
    )


def report_for_senders(store: Store, keys: Sequence[str], q: Query) -> Report:
    """Reports for just these senders, in this order (a notification's evidence)."""
    changes = _changes(store, q)
    rows = [row for key in keys if (row := store.sender(key)) is not None]
    found = [row.key for row in rows]
    all_totals = store.report_totals(q.since, q.until, found, per_hour_for=found)
    senders = tuple(
        sender_report(store, row, changes.get(row.key, ()), q,
                      all_totals.get(row.key, SenderTotals()))
        for row in rows
    )
    return Report(generated_at=time.time(), until=q.until, since=q.since, senders=senders,
                  half_life=q.half_life)


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
    "load_report",
    "notification_builder",
    "report_for_senders",
    "sender_report",
]
