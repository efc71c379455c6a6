"""Keeping the store small: per-message rows folded into per-sender days after
`[store] detail_days`, minute counters compacted into daily ones, and everything
past `[store] retention_days` deleted, all in batches of bounded size.

Each batch is its own short transaction, so a writer (an engine's flush, another
host's) waits for one batch at most rather than for the whole prune. A fold takes
its rows with DELETE ... RETURNING and adds them into the aggregate in the same
transaction: two hosts folding at once each add only the rows they deleted, and a
crash between batches loses nothing and counts nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.scoring import schema
from extrusion.scoring.dialects import WritePath

DAY = 86400
HOUR = 3600
BLOCK = 4 * HOUR  # reports count four-hour blocks active (reportreads.BLOCK)
BATCH = 5000  # rows per transaction: a few tens of milliseconds on either backend
DELIVERED = frozenset({"sent"})
FAILED = frozenset({"bounced", "expired", "rejected"})
_COUNTS = ("messages", "recipients", "delivered", "failed")

Step = Callable[[Connection], int]


def detail_boundary(now: float, detail_days: float) -> float:
    """The first second still kept in detail: the start of a four-hour block, so that
    an hour or a block is either folded or not, and hours and blocks active (a folded
    day's bitmask, distinct hours of the detail) are never counted twice."""
    return float((int(now - detail_days * DAY) // BLOCK) * BLOCK)


# Minute counters are read over a day back (`extrusion show`'s budget; the flows' MX
# notes over `[flows] window_seconds`, a day by default): past two days they are
# folded into their day's bucket whatever `detail_days`, a tenth of a week of minutes.
COUNTER_DETAIL_DAYS = 2.0


def counter_boundary(now: float, detail_days: float, read_back: float = DAY) -> float:
    """The first second whose minute counters are kept: `detail_boundary` of
    `detail_days` or of COUNTER_DETAIL_DAYS, whichever is later, and never within a
    day of the longest window read (`read_back` seconds), whose sums stay exact."""
    days = max(COUNTER_DETAIL_DAYS, read_back / DAY + 1.0)
    return max(detail_boundary(now, detail_days), detail_boundary(now, days))


def _take(conn: Connection, table: sa.Table, where: Any, limit: int,
          returning: tuple[sa.Column[Any], ...] = ()) -> list[Any]:
    """Delete at most `limit` rows matching `where`; the `returning` columns of each."""
    key = list(table.primary_key.columns)
    # The batch is the first `limit` matching rows in key order, deleted as a key range
    # (an index range, two parameters): an IN list of thousands of keys, or IN
    # (SELECT ... LIMIT), costs PostgreSQL several times the delete itself.
    cut = conn.execute(sa.select(*key).where(where).order_by(*key)
                       .offset(limit - 1).limit(1)).first()
    stmt = table.delete().where(where)
    if cut is not None:
        stmt = stmt.where(key[0] <= cut[0] if len(key) == 1
                          else sa.tuple_(*key) <= sa.tuple_(*(sa.literal(v) for v in cut)))
    if not returning:
        return [None] * int(conn.execute(stmt).rowcount)
    return list(conn.execute(stmt.returning(*returning)).all())


def _add_days(conn: Connection, path: WritePath, days: dict[tuple[str, int], list[int]]) -> None:
    """Add counts into `sender_days` (OR the hours), in one lock order for every host."""
    if not days:
        return
    t = schema.sender_days
    ins = path.insert(t)
    set_: dict[str, Any] = {c: t.c[c] + ins.excluded[c] for c in _COUNTS}
    set_["hours"] = t.c.hours.op("|")(ins.excluded.hours)
    rows = [dict(zip(("sender", "day", *_COUNTS, "hours"), (s, d, *v), strict=True))
            for (s, d), v in sorted(days.items())]
    conn.execute(ins.on_conflict_do_update(index_elements=[t.c.sender, t.c.day], set_=set_),
                 rows)


def _day(t: float) -> int:
    return int(t // DAY) * DAY


def fold_messages(conn: Connection, path: WritePath, before: float, limit: int) -> int:
    m = schema.messages
    rows = _take(conn, m, m.c.time < before, limit, (m.c.sender, m.c.time, m.c.rcpt_count))
    days: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for sender, t, rcpts in rows:
        day = _day(t)
        v = days[(sender, day)]
        v[0] += 1
        v[1] += int(rcpts)
        v[4] |= 1 << min(int((t - day) // HOUR), 23)
    _add_days(conn, path, days)
    return len(rows)


def fold_recipients(conn: Connection, path: WritePath, before: float, limit: int) -> int:
    r = schema.recipients
    rows = _take(conn, r, r.c.time < before, limit, (r.c.sender, r.c.time, r.c.status))
    days: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for sender, t, status in rows:
        # Only final outcomes count in reports; "queued" rows and nameless outcomes go.
        if sender and (status in DELIVERED or status in FAILED):
            days[(sender, _day(t))][2 if status in DELIVERED else 3] += 1
    _add_days(conn, path, days)
    return len(rows)


def compact_counters(conn: Connection, path: WritePath, before: float, limit: int) -> int:
    """Fold minute buckets before `before` into the bucket of their day's start."""
    c = schema.counters
    rows = _take(conn, c, sa.and_(c.c.bucket < int(before), c.c.bucket % DAY != 0), limit,
                 (c.c.sender, c.c.name, c.c.bucket, c.c.value))
    sums: dict[tuple[str, str, int], float] = defaultdict(float)
    for sender, name, bucket, value in rows:
        sums[(sender, name, _day(bucket))] += value
    if sums:
        ins = path.insert(c)
        conn.execute(ins.on_conflict_do_update(
            index_elements=[c.c.sender, c.c.name, c.c.bucket],
            set_={"value": c.c.value + ins.excluded.value},
        ), [{"sender": s, "name": n, "bucket": b, "value": v}
            for (s, n, b), v in sorted(sums.items())])
    return len(rows)


def folds(path: WritePath, before: float, limit: int,
          counters_before: float | None = None) -> Iterator[Step]:
    """The steps that fold detail older than `before` (minute counters older than
    `counters_before`, if given), each one batch per call."""
    minutes = before if counters_before is None else counters_before
    yield lambda conn: fold_messages(conn, path, before, limit)
    yield lambda conn: fold_recipients(conn, path, before, limit)
    yield lambda conn: compact_counters(conn, path, minutes, limit)


def expiries(before: float, limit: int) -> Iterator[Step]:
    """The steps that delete what is older than `before`, each one batch per call."""
    ib = int(before)
    for table, where in (
        (schema.counters, schema.counters.c.bucket < ib),
        (schema.recipients, schema.recipients.c.time < before),
        (schema.messages, schema.messages.c.time < before),
        (schema.sender_days, schema.sender_days.c.day <= ib - DAY),  # days ended
        (schema.sender_baselines, schema.sender_baselines.c.updated < before),
        (schema.rate_use, schema.rate_use.c.bucket < ib),
        (schema.failure_windows, schema.failure_windows.c.time < before),
    ):
        yield partial(_expire, table=table, where=where, limit=limit)


def _expire(conn: Connection, *, table: sa.Table, where: Any, limit: int) -> int:
    return len(_take(conn, table, where, limit))
