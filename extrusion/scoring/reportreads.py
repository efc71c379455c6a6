"""The reports' reads: a few set-based queries instead of one per message, each inside
the caller's read transaction (`Store.report_totals`, `Store.listed_messages`).

Counts, hours active and outcomes per hour are aggregated in the database,
and added to the days folded past `[store] detail_days` (scoring/retention.py:
their counts, not their messages, and no outcomes per hour),
so a sender with 50,000 messages costs one row per hour, not 50,000 objects;
only the messages a report lists are fetched, their recipients unpacked from their rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.scoring import schema
from extrusion.scoring.names import lookup, lookup_one, text_of
from extrusion.scoring.packing import ORPHAN, recipients

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


def _chunks(keys: Sequence[Any] | None) -> Iterator[Sequence[Any] | None]:
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
    outcomes per hour only for `per_hour_for`. `keys` None: every sender. An outcome
    counts in its message's window (it is kept in the message's row)."""
    m = schema.messages
    lo = since if since is not None else 0.0
    by_id: dict[int, SenderTotals] = defaultdict(SenderTotals)
    submitted = m.c.flags.op("&")(ORPHAN) == 0
    for chunk in _chunks(keys):
        ids = None if chunk is None else list(lookup(conn, chunk).values())
        if ids is not None and not ids:
            continue
        q = (
            sa.select(
                m.c.sender_id,
                sa.func.sum(sa.case((submitted, 1), else_=0)),
                sa.func.coalesce(sa.func.sum(m.c.rcpt_count), 0),
                sa.func.coalesce(sa.func.sum(m.c.delivered), 0),
                sa.func.coalesce(sa.func.sum(m.c.failed), 0),
                sa.func.count(sa.distinct(sa.case((submitted, _bucket(dialect, m.c.time, HOUR))))),
                sa.func.count(sa.distinct(sa.case((submitted,
                                                   _bucket(dialect, m.c.time, BLOCK))))),
            )
            .where(m.c.time >= lo, m.c.time <= until)
            .group_by(m.c.sender_id)
        )
        if ids is not None:
            q = q.where(m.c.sender_id.in_(ids))
        for sender_id, n, rcpts, delivered, failed, hours, blocks in conn.execute(q):
            t = by_id[sender_id]
            t.messages, t.recipients = int(n or 0), int(rcpts)
            t.delivered, t.failed, t.hours, t.blocks = int(delivered), int(failed), hours, blocks
        _add_days(conn, by_id, lo, until, ids)
    texts = text_of(conn, by_id)
    out = {texts.get(i, ""): t for i, t in by_id.items()}
    _per_hour(conn, dialect, out, lo, until, per_hour_for)
    out.pop("", None)  # outcomes nobody could be named for
    return out


def _add_days(conn: Connection, out: dict[int, SenderTotals], lo: float, until: float,
              ids: Sequence[int] | None) -> None:
    """Add the folded days (`sender_days`) whose start lies in the window, as an hour
    bucket counts when its start does; detail and folded rows never overlap."""
    d = schema.sender_days
    q = sa.select(d.c.sender_id, d.c.messages, d.c.recipients, d.c.delivered, d.c.failed,
                  d.c.hours).where(d.c.day >= lo, d.c.day <= until)
    if ids is not None:
        q = q.where(d.c.sender_id.in_(ids))
    for sender_id, n, rcpts, delivered, failed, hours in conn.execute(q):
        t = out[sender_id]
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
    each with its recipients' last outcomes in time order (queued ones first)."""
    m = schema.messages
    sender_id = lookup_one(conn, sender)
    if sender_id is None:
        return []
    lo = since if since is not None else 0.0
    mq = (
        sa.select(m.c.time, m.c.mta_id, m.c.queue_id, m.c.envelope_from, m.c.helo_id,
                  m.c.client_addr, m.c.client_name_id, m.c.size, m.c.rcpts)
        .where(m.c.sender_id == sender_id, m.c.time >= lo, m.c.time <= until,
               m.c.flags.op("&")(ORPHAN) == 0)
        .order_by(m.c.time.desc(), m.c.queue_id.desc())
    )
    if limit:
        mq = mq.limit(limit)
    rows = list(reversed(conn.execute(mq).all()))
    texts = text_of(conn, {i for r in rows for i in (r[1], r[4], r[6])})
    out = []
    for t, mta, qid, env, helo, addr, name, size, rcpts in rows:
        history = sorted((RecipientHistory(x.time, x.recipient, x.status, x.dsn, x.reply)
                          for x in recipients(rcpts, t)), key=_time)
        out.append((ListedMessage(t, texts.get(mta, ""), qid, env, texts.get(helo, ""), addr,
                                  texts.get(name, ""), size), history))
    return out


def _time(r: RecipientHistory) -> float:
    return r.time


def _per_hour(conn: Connection, dialect: str, out: dict[str, SenderTotals],
              lo: float, until: float, senders: Sequence[str]) -> None:
    """Delivered and failed outcomes per hour of their message, of `senders`, into `out`."""
    m = schema.messages
    hour = _bucket(dialect, m.c.time, HOUR).label("hour")
    ids = lookup(conn, senders)
    texts = {i: s for s, i in ids.items()}
    for chunk in _chunks(list(texts)):
        assert chunk is not None
        hq = (
            sa.select(m.c.sender_id, hour, sa.func.sum(m.c.delivered), sa.func.sum(m.c.failed))
            .where(m.c.sender_id.in_(chunk), m.c.time >= lo, m.c.time <= until,
                   m.c.delivered + m.c.failed > 0)
            .group_by(m.c.sender_id, hour)
        )
        for sender_id, h, delivered, failed in conn.execute(hq):
            totals = out.setdefault(texts[sender_id], SenderTotals())
            slot = totals.per_hour.setdefault(float(h * HOUR), [0, 0])
            slot[0] += int(delivered or 0)
            slot[1] += int(failed or 0)
