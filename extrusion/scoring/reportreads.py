"""The reports' reads: a few set-based queries instead of one per message, each inside
the caller's read transaction (`Store.report_totals`, `Store.listed_messages`).

Counts, hours active and outcomes per hour are aggregated in the database,
and added to the days folded past `[store] detail_days` (scoring/retention.py:
their counts, not their messages, and no outcomes per hour),
so a sender with 50,000 messages costs one row per hour, not 50,000 objects;
only the messages a report lists are fetched, with their recipients' rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.scoring import schema
from extrusion.scoring.rows import QUEUED

HOUR = 3600
BLOCK = 4 * HOUR  # the four-hour blocks of the sFlow analysis
DELIVERED_STATUSES = ("sent",)
FAILED_STATUSES = ("bounced", "expired", "rejected")
IN_CHUNK = 500  # keys per IN (...) list, well under every backend's parameter limit


@dataclass
class SenderTotals:
    messages: int = 0
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    hours: int = 0
    blocks: int = 0
    per_hour: dict[float, list[int]] = field(default_factory=dict)  # start -> [delivered, failed]


@dataclass(frozen=True, slots=True)
class ListedMessage:
    """The envelope of a message a report lists."""

    time: float
    mta: str
    queue_id: str
    envelope_from: str
    helo: str
    client_addr: str
    client_name: str
    size: int


class RecipientHistory(NamedTuple):
    """One row of a recipient's history (a tuple: hundreds of thousands per report)."""

    time: float
    recipient: str
    status: str
    dsn: str
    reply: str


def _bucket(dialect: str, column: Any, seconds: int) -> Any:
    # PostgreSQL's CAST rounds and SQLite's truncates; floor() is exact on PostgreSQL
    # and truncation is floor for the positive times a store holds.
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(column / seconds), sa.BigInteger)
    return sa.cast(column / seconds, sa.Integer)


def _chunks(keys: Sequence[str] | None) -> Iterator[Sequence[str] | None]:
    if keys is None:
        yield None
        return
    for i in range(0, len(keys), IN_CHUNK):
        yield keys[i : i + IN_CHUNK]


def totals(
    conn: Connection,
    dialect: str,
    since: float | None,
    until: float,
    keys: Sequence[str] | None = None,
    *,
    per_hour_for: Sequence[str] = (),
) -> dict[str, SenderTotals]:
    """Per sender in the window: messages, recipients, outcomes, hours and blocks active;
    outcomes per hour only for `per_hour_for`. `keys` None: every sender."""
    m, r = schema.messages, schema.recipients
    lo = since if since is not None else 0.0
    out: dict[str, SenderTotals] = defaultdict(SenderTotals)
    final = sa.case(
        (r.c.status.in_(DELIVERED_STATUSES), 0), (r.c.status.in_(FAILED_STATUSES), 1), else_=-1
    ).label("failed")
    for chunk in _chunks(keys):
        mq = (
            sa.select(
                m.c.sender,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(m.c.rcpt_count), 0),
                sa.func.count(sa.distinct(_bucket(dialect, m.c.time, HOUR))),
                sa.func.count(sa.distinct(_bucket(dialect, m.c.time, BLOCK))),
            )
            .where(m.c.time >= lo, m.c.time <= until)
            .group_by(m.c.sender)
        )
        rq = (
            sa.select(r.c.sender, final, sa.func.count())
            .where(r.c.time >= lo, r.c.time <= until, r.c.status != QUEUED)
            .group_by(r.c.sender, final)
        )
        if chunk is not None:
            mq = mq.where(m.c.sender.in_(chunk))
            rq = rq.where(r.c.sender.in_(chunk))
        for sender, n, rcpts, hours, blocks in conn.execute(mq):
            t = out[sender]
            t.messages, t.recipients, t.hours, t.blocks = n, int(rcpts), hours, blocks
        for sender, failed, n in conn.execute(rq):
            if failed == 1:
                out[sender].failed += n
            elif failed == 0:
                out[sender].delivered += n
        _add_days(conn, out, lo, until, chunk)
    _per_hour(conn, dialect, out, final, lo, until, per_hour_for)
    out.pop("", None)  # outcomes nobody could be named for
    return dict(out)


def _add_days(conn: Connection, out: dict[str, SenderTotals], lo: float, until: float,
              chunk: Sequence[str] | None) -> None:
    """Add the folded days (`sender_days`) whose start lies in the window, as an hour
    bucket counts when its start does; detail and folded rows never overlap."""
    d = schema.sender_days
    q = sa.select(d.c.sender, d.c.messages, d.c.recipients, d.c.delivered, d.c.failed,
                  d.c.hours).where(d.c.day >= lo, d.c.day <= until)
    if chunk is not None:
        q = q.where(d.c.sender.in_(chunk))
    for sender, n, rcpts, delivered, failed, hours in conn.execute(q):
        t = out[sender]
        t.messages += n
        t.recipients += rcpts
        t.delivered += delivered
        t.failed += failed
        t.hours += hours.bit_count()
        t.blocks += sum(1 for b in range(0, 24, BLOCK // HOUR) if hours >> b & 0xF)


def listed_messages(
    conn: Connection, sender: str, since: float | None, until: float, limit: int
) -> list[tuple[ListedMessage, list[RecipientHistory]]]:
    """The sender's most recent `limit` messages (0: all) in the window, oldest first,
    each with its recipients' rows in the order they were written."""
    m, r = schema.messages, schema.recipients
    lo = since if since is not None else 0.0
    mq = (
        sa.select(m.c.time, m.c.mta, m.c.queue_id, m.c.envelope_from, m.c.helo,
                  m.c.client_addr, m.c.client_name, m.c.size)
        .where(m.c.sender == sender, m.c.time >= lo, m.c.time <= until)
        .order_by(m.c.time.desc(), m.c.id.desc())
    )
    if limit:
        mq = mq.limit(limit)
    msgs = [ListedMessage(*row) for row in conn.execute(mq).all()]
    if not msgs:
        return []
    msgs.reverse()
    by_queue: dict[tuple[str, str], list[RecipientHistory]] = {
        (x.mta, x.queue_id): [] for x in msgs
    }
    # Outcomes are written with the sender and never before the submission.
    rq = (
        sa.select(r.c.mta, r.c.queue_id, r.c.time, r.c.recipient, r.c.status, r.c.dsn,
                  r.c.reply)
        .where(r.c.sender == sender, r.c.time >= msgs[0].time)
        .order_by(r.c.time, r.c.id)
    )
    # .all() fetches in bulk: several times faster than row-by-row iteration.
    for mta, qid, t, rcpt, status, dsn, reply in conn.execute(rq).all():
        rows = by_queue.get((mta, qid))
        if rows is not None:
            rows.append(RecipientHistory(t, rcpt, status, dsn, reply))
    return [(x, by_queue[(x.mta, x.queue_id)]) for x in msgs]


def _per_hour(conn: Connection, dialect: str, out: dict[str, SenderTotals], final: Any,
              lo: float, until: float, senders: Sequence[str]) -> None:
    """Delivered and failed outcomes per hour of `senders`, into `out`."""
    r = schema.recipients
    hour = _bucket(dialect, r.c.time, HOUR).label("hour")
    for chunk in _chunks(list(senders)):
        assert chunk is not None
        hq = (
            sa.select(r.c.sender, hour, final, sa.func.count())
            .where(r.c.sender.in_(chunk), r.c.time >= lo, r.c.time <= until,
                   r.c.status.in_(DELIVERED_STATUSES + FAILED_STATUSES))
            .group_by(r.c.sender, hour, final)
        )
        for sender, h, failed, n in conn.execute(hq):
            slot = out[sender].per_hour.setdefault(float(h * HOUR), [0, 0])
            slot[failed] += n
