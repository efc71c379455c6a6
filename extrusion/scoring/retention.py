"""Keeping the store small: per-message rows folded into per-sender days after
`[store] detail_days`, minute counters deleted once past every window that reads
them, and everything past `[store] retention_days` deleted, all in batches of
bounded size.

Each batch is its own short transaction, so a writer (an engine's flush, another
host's) waits for one batch at most rather than for the whole prune. A fold takes
its rows with DELETE ... RETURNING and adds them into the aggregate in the same
transaction: two hosts folding at once each add only the rows they deleted, and a
crash between batches loses nothing and counts nothing twice.

Each step walks its table in primary-key order and each batch starts after the last
key of the one before (a keyset walk): a batch that began again from the lowest key
would pass every row an earlier batch kept (and, on PostgreSQL, every dead row an
earlier batch deleted), which made a prune of a million rows quadratic (issue 20).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from extrusion.scoring import schema
from extrusion.scoring.dialects import WritePath
from extrusion.scoring.names import expiry_day
from extrusion.scoring.packing import ORPHAN

DAY = 86400
HOUR = 3600
BLOCK = 4 * HOUR  # reports count four-hour blocks active (reportreads.BLOCK)
# Rows per transaction, by backend. SQLite has one writer at a time: a writer waits
# for the batch under way, so batches stay small (a few tens of milliseconds). On
# PostgreSQL a writer does not wait for a batch that deletes rows it does not write
# (MVCC), so batches are large: each batch costs two descents of the primary key's
# index and a commit, which made 5,000-row batches 2.5-5x one statement (issue 20).
BATCH = 5000
PG_BATCH = 50_000
BACKEND = 0  # a `batch` of 0: the backend's own size (batch_size)

_COUNTS = ("messages", "recipients", "delivered", "failed")
# `messages` walked by time (its key is (mta, queue id)): the rows a fold or an expiry
# takes are the oldest. A batch takes every row at its last time (`_take` deletes up to
# the cut inclusive), so the next one starts after that time without a tie-breaker.
_BY_TIME = [schema.messages.c.time]

Key = tuple[Any, ...]
# One batch of a step: the rows it took, and the key the next batch starts after
# (None: the step has taken everything it matches).
Step = Callable[[Connection, "Key | None"], tuple[int, "Key | None"]]


def batch_size(dialect: str) -> int:
    """Rows per prune transaction on `dialect` ("sqlite", "postgresql")."""
    return BATCH if dialect == "sqlite" else PG_BATCH


def detail_boundary(now: float, detail_days: float) -> float:
    """The first second still kept in detail: the start of a four-hour block, so that
    an hour or a block is either folded or not, and hours and blocks active (a folded
    day's bitmask, distinct hours of the detail) are never counted twice."""
    return float((int(now - detail_days * DAY) // BLOCK) * BLOCK)


# Minute counters are read over a day back at most (`extrusion show`'s budget, an hour
# and a day; the flows' MX notes over `[flows] window_seconds`, a day by default) and
# reports count from `messages` and `sender_days`. While the messages kept in detail
# cover that window, the counters' readers take what lies past MINUTES_KEPT from
# `messages` (messagereads.counters), so minute rows are deleted past it (issue 20:
# with 20 messages a day a sender's minute rows were nearly as many as its messages).
# Otherwise they are kept until COUNTER_DETAIL_DAYS and past whichever window is read.
COUNTER_DETAIL_DAYS = 2.0
MINUTES_KEPT = 2 * HOUR


def counter_boundary(now: float, detail_days: float, read_back: float = DAY) -> float:
    """The first second whose minute counters are kept: the hour MINUTES_KEPT back when
    the detail (`detail_days`) reaches further back than `read_back` seconds; else
    `detail_boundary` of `detail_days` or of COUNTER_DETAIL_DAYS, whichever is later,
    and never within a day of the longest window read, whose sums stay exact."""
    minutes = float(int(now - MINUTES_KEPT) // HOUR * HOUR)
    if detail_boundary(now, detail_days) <= now - read_back:
        return minutes
    days = max(COUNTER_DETAIL_DAYS, read_back / DAY + 1.0)
    return max(detail_boundary(now, detail_days), detail_boundary(now, days))


def _after(key: list[sa.Column[Any]], last: Key) -> Any:
    """Rows past `last` in key order: an index range on either backend (a row value
    for a composite key, which SQLite >= 3.15 and PostgreSQL search by the key's index)."""
    if len(key) == 1:
        return key[0] > last[0]
    return sa.tuple_(*key) > sa.tuple_(*(sa.literal(v) for v in last))


def _upto(key: list[sa.Column[Any]], last: Key) -> Any:
    if len(key) == 1:
        return key[0] <= last[0]
    return sa.tuple_(*key) <= sa.tuple_(*(sa.literal(v) for v in last))


def _take(conn: Connection, table: sa.Table, where: Any, limit: int | None,
          after: Key | None, returning: tuple[sa.Column[Any], ...] = (),
          key: list[sa.Column[Any]] | None = None) -> tuple[list[Any], Key | None]:
    """Delete at most `limit` rows matching `where` past key `after` (None: from the
    start; a `limit` of None: all of them at once) in `key` order (default: the primary
    key's); the `returning` columns of each, and the last key of the batch (None when no
    matching row is left past it)."""
    key = key or list(table.primary_key.columns)
    if after is not None:
        where = sa.and_(where, _after(key, after))
    # The batch is the next `limit` matching rows in key order, deleted as a key range
    # (an index range, two bounds): an IN list of thousands of keys, or IN
    # (SELECT ... LIMIT), costs PostgreSQL several times the delete itself.
    cut = None if limit is None else conn.execute(
        sa.select(*key).where(where).order_by(*key).offset(limit - 1).limit(1)).first()
    stmt = table.delete().where(where)
    if cut is not None:
        stmt = stmt.where(_upto(key, tuple(cut)))
    last = None if cut is None else tuple(cut)
    if not returning:
        return [None] * int(conn.execute(stmt).rowcount), last
    return list(conn.execute(stmt.returning(*returning)).all()), last


def _add_days(conn: Connection, path: WritePath,
              days: dict[tuple[int, int], list[int]]) -> None:
    """Add counts into `sender_days` (OR the hours), in one lock order for every host."""
    t = schema.sender_days

    def set_(ins: Any) -> dict[str, Any]:
        cols: dict[str, Any] = {c: t.c[c] + ins.excluded[c] for c in _COUNTS}
        cols["hours"] = t.c.hours.op("|")(ins.excluded.hours)
        return cols
    _upsert(conn, path, t, set_, [
        dict(zip(("sender_id", "day", *_COUNTS, "hours"), (s, d, *v), strict=True))
        for (s, d), v in sorted(days.items())])


def _upsert(conn: Connection, path: WritePath, table: sa.Table,
            set_: Callable[[Any], dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """INSERT `rows` (in their order: the lock order), or add them into the stored ones.

    On PostgreSQL as one statement over arrays, a column each (unnest): psycopg's
    executemany runs a statement per row, which was most of a fold's time there, and a
    multi-row VALUES costs SQLAlchemy a compile per batch. SQLite runs one prepared
    statement per row in C."""
    if not rows:
        return
    key = list(table.primary_key.columns)
    if path.name == "sqlite":
        ins = path.insert(table)
        conn.execute(ins.on_conflict_do_update(index_elements=key, set_=set_(ins)), rows)
        return
    names = list(rows[0])
    arrays = sa.func.unnest(*(sa.bindparam(n, type_=postgresql.ARRAY(table.c[n].type))
                              for n in names)).table_valued(*names).render_derived()
    ins = path.insert(table).from_select(names, sa.select(*(arrays.c[n] for n in names)))
    conn.execute(ins.on_conflict_do_update(index_elements=key, set_=set_(ins)),
                 {n: [r[n] for r in rows] for n in names})


def _day(t: float) -> int:
    return int(t // DAY) * DAY


def fold_messages(conn: Connection, path: WritePath, before: float, limit: int | None,
                  after: Key | None = None) -> tuple[int, Key | None]:
    """Messages older than `before` into their senders' days, walked in time order
    (rows arrive in it: on PostgreSQL the BRIN index finds them). A row of outcomes only
    counts its outcomes, not a message nor an hour active."""
    m = schema.messages
    rows, last = _take(conn, m, m.c.time < before, limit, after,
                       (m.c.sender_id, m.c.time, m.c.rcpt_count, m.c.delivered, m.c.failed,
                        m.c.flags), key=_BY_TIME)
    days: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for sender, t, rcpts, delivered, failed, flags in rows:
        day = _day(t)
        v = days[(int(sender), day)]  # (SQLite may return them as floats)
        v[1] += int(rcpts)
        v[2] += int(delivered)
        v[3] += int(failed)
        if not int(flags) & ORPHAN:
            v[0] += 1
            v[4] |= 1 << min(int((t - day) // HOUR), 23)
    _add_days(conn, path, days)
    return len(rows), last


def folds(path: WritePath, before: float, limit: int | None) -> list[Step]:
    """The step that folds detail older than `before` into days, one batch per call.

    A fold's row costs several times a deleted one's (its upserts), and batches of
    BATCH already match one statement: larger ones would only hold the daemon's
    flushing thread longer per slice."""
    fold = None if limit is None else min(limit, BATCH)
    return [lambda conn, after: fold_messages(conn, path, before, fold, after)]


def expiries(before: float, limit: int | None, counters_before: float | None = None
             ) -> list[Step]:
    """The steps that delete what is older than `before` (minute counters: older than
    `counters_before` too, if given), each one batch per call."""
    ib = int(before)
    ic = ib if counters_before is None else int(max(before, counters_before))
    m = schema.messages
    return [_counters_expiry(ic, limit), _expiry(m, m.c.time < before, limit, _BY_TIME),
            *(_expiry(table, where, limit) for table, where in (
        (schema.sender_days, schema.sender_days.c.day <= ib - DAY),  # days ended
        (schema.sender_baselines, schema.sender_baselines.c.updated < before),
        (schema.rate_use, schema.rate_use.c.bucket < ib),
        (schema.failure_windows, schema.failure_windows.c.time < before),
        # Last: names no write has used since before the boundary (names.py says why
        # no row can still name them).
        (schema.names, schema.names.c.seen < expiry_day(before)),
            ))]


def _counters_expiry(before: int, limit: int | None) -> Step:
    """Minute counters older than `before` deleted, the horizon noted first: the
    counters' readers take what lies before it from `messages`."""
    c = schema.counters
    delete = _expiry(c, c.c.bucket < before, limit)

    def step(conn: Connection, after: Key | None) -> tuple[int, Key | None]:
        if after is None:
            sender_id, name = schema.COUNTERS_HORIZON
            if conn.execute(sa.select(c.c.bucket).where(  # a horizon only moves on
                    c.c.sender_id == sender_id, c.c.name == name,
                    c.c.bucket >= before)).first() is None:
                # Two hosts pruning at once note the same horizon: the second one's is
                # there already.
                conn.execute(sa.text("INSERT INTO counters (sender_id, name, bucket, value) "
                                     "VALUES (:s, :n, :b, 0.0) ON CONFLICT DO NOTHING"),
                             {"s": sender_id, "n": name, "b": before})
        return delete(conn, after)
    return step


def _expiry(table: sa.Table, where: Any, limit: int | None,
            key: list[sa.Column[Any]] | None = None) -> Step:
    def step(conn: Connection, after: Key | None) -> tuple[int, Key | None]:
        rows, last = _take(conn, table, where, limit, after, key=key)
        return len(rows), last
    return step


@dataclass
class Walk:
    """One step walked through its table: where its last committed batch ended."""

    step: Step
    after: Key | None = None
    done: bool = False

    def advance(self, last: Key | None) -> None:
        """The batch that ended at `last` is committed: the next one starts after it."""
        self.after, self.done = last, last is None


@dataclass
class Prune:
    """A prune under way: its steps in order (folds first), each where it stopped.

    The daemon prunes a slice per sync (`Store.prune_some`); the next slice goes on
    with the same walks, so a backlog is walked once rather than once per slice. A
    prune begun finishes with the horizons it began with: a boundary that moved on
    mid-walk would leave part of a four-hour block folded and the rest in detail."""

    before: float
    detail_before: float | None
    limit: int | None
    counters_before: float | None = None
    walks: list[Walk] = field(default_factory=list)

    @classmethod
    def plan(cls, path: WritePath, before: float, detail_before: float | None,
             limit: int | None, counters_before: float | None = None) -> Prune:
        if detail_before is None or detail_before <= before:
            steps = expiries(before, limit)
        else:
            # Minute counters go with the detail (or sooner, `counters_before`): one walk
            # of their table with the later horizon, not one per horizon.
            minutes = detail_before if counters_before is None else counters_before
            steps = [*folds(path, detail_before, limit), *expiries(before, limit, minutes)]
        return cls(before, detail_before, limit, counters_before, [Walk(s) for s in steps])

    def serves(self, before: float, detail_before: float | None, limit: int | None,
               counters_before: float | None = None) -> bool:
        """Whether a call for these horizons may go on with this prune: the same batch
        size, and nothing taken that the call would keep (its horizons are no earlier)."""
        if limit != self.limit or before < self.before:
            return False
        return (_no_earlier(detail_before, self.detail_before)
                and _no_earlier(counters_before, self.counters_before))

    def pending(self) -> list[Walk]:
        return [w for w in self.walks if not w.done]


def _no_earlier(asked: float | None, begun: float | None) -> bool:
    """A horizon asked for may reuse a walk begun with `begun`: both absent, or no earlier."""
    if asked is None or begun is None:
        return asked == begun
    return asked >= begun
