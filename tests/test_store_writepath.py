"""The contract of a write path (dialects.py, packedwrite.py): SQLite's and PostgreSQL's
keep concurrent writers apart in their own ways, and must answer the batch writer the
same."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from extrusion.scoring import migrate, schema
from extrusion.scoring.database import Database
from extrusion.scoring.dialects import PostgresWrites, SqliteWrites, WritePath, write_path
from extrusion.scoring.names import Names, day_of
from extrusion.scoring.packedwrite import write_messages
from extrusion.scoring.packing import ORPHAN, Recipient, recipients
from extrusion.scoring.queueids import QUEUE_ID_REUSE_SECONDS
from extrusion.scoring.rows import MessageRow, RecipientRow

T0 = 1_700_000_000.0
MTA = "mx1"
BOT = "ip:192.0.2.66"


@pytest.fixture
def db(store_url: str) -> Iterator[tuple[Database, WritePath]]:
    database = Database(store_url)
    path = write_path(database.dialect)
    migrate.create(database, path, 5000)
    try:
        yield database, path
    finally:
        database.close()


Counts = dict[str, float]


def add(db: tuple[Database, WritePath], rows: list[MessageRow],
        recipients: list[RecipientRow] = ()) -> Counts:  # type: ignore[assignment]
    """The rows written as a flush writes them; what it counted, by counter name."""
    database, path = db
    names = Names()
    interning = names.interning(day_of(max((r.time for r in [*rows, *recipients]), default=0.0)))
    with database.write() as conn:
        counted = write_messages(conn, path, interning, rows, list(recipients), {})
    names.learn(interning)
    out: Counts = {}
    for (_sender, name, _bucket), v in counted.items():
        out[name] = out.get(name, 0.0) + v
    return out


def stored(db: tuple[Database, WritePath]) -> list[tuple[str, float, str, int]]:
    m, n = schema.messages, schema.names
    q = (sa.select(m.c.queue_id, m.c.time, n.c.name, m.c.rcpt_count)
         .join(n, n.c.id == m.c.helo_id).order_by(m.c.queue_id))
    with db[0].read() as conn:
        return [(str(a), float(b), str(c), int(d)) for a, b, c, d in conn.execute(q)]


def test_each_dialect_has_its_own_write_path(db: tuple[Database, WritePath]) -> None:
    database, path = db
    assert type(path) is {"sqlite": SqliteWrites, "postgresql": PostgresWrites}[database.dialect]
    assert path.name == database.dialect


def test_new_messages_are_inserted_and_repeated_reports_merged(
        db: tuple[Database, WritePath]) -> None:
    counted = add(db, [
        MessageRow(T0, MTA, "Q1", BOT, rcpt_count=1),
        MessageRow(T0, MTA, "Q2", BOT, helo="pc", rcpt_count=2),
        MessageRow(T0 + 1, MTA, "Q2", BOT, rcpt_count=3),  # the same batch reports it again
    ])
    assert counted == {"messages": 2.0, "recipients": 4.0}
    assert stored(db) == [("Q1", T0, "", 1), ("Q2", T0, "pc", 3)]

    later = MessageRow(T0 + 5, MTA, "Q1", BOT, helo="laptop", rcpt_count=4)
    counted = add(db, [later, MessageRow(T0 + 5, MTA, "Q3", BOT)])
    # Q3 is new; Q1 was stored: only the recipients its first report lacked count.
    assert counted == {"messages": 1.0, "recipients": 3.0}
    # The richer columns of the second report, the earliest time.
    assert stored(db)[0] == ("Q1", T0, "laptop", 4)


def test_a_queue_id_reused_after_days_replaces_the_old_row(
        db: tuple[Database, WritePath]) -> None:
    add(db, [MessageRow(T0, MTA, "Q1", BOT, helo="old", rcpt_count=5)])
    reused = MessageRow(T0 + QUEUE_ID_REUSE_SECONDS + 1, MTA, "Q1", BOT, rcpt_count=1)
    assert add(db, [reused]) == {"messages": 1.0, "recipients": 1.0}  # a message of its own
    assert stored(db) == [("Q1", reused.time, "", 1)]


def test_outcomes_merge_into_their_message_and_make_a_row_when_it_is_unknown(
        db: tuple[Database, WritePath]) -> None:
    add(db, [MessageRow(T0, MTA, "Q1", BOT, rcpt_count=2)],
        [RecipientRow(T0, MTA, "Q1", BOT, r, "queued") for r in ("a@x", "b@x")])
    add(db, [], [RecipientRow(T0 + 2, MTA, "Q1", BOT, "a@x", "sent", "delivered", "2.0.0"),
                 RecipientRow(T0 + 3, MTA, "Q1", BOT, "b@x", "bounced", "hard", "5.1.1",
                              "550 no such user"),
                 RecipientRow(T0 + 4, MTA, "Q9", BOT, "c@x", "sent", "delivered", "2.0.0")])
    # An older outcome read again (a log re-read) does not replace a newer one.
    add(db, [], [RecipientRow(T0 + 1, MTA, "Q1", BOT, "b@x", "deferred", "soft", "4.0.0")])
    with db[0].read() as conn:
        rows = {r.queue_id: r for r in conn.execute(sa.select(schema.messages))}
    q1, q9 = rows["Q1"], rows["Q9"]
    assert (q1.rcpt_count, q1.delivered, q1.failed, q1.flags & ORPHAN) == (2, 1, 1, 0)
    assert recipients(q1.rcpts, q1.time) == [
        Recipient(T0 + 2, "a@x", "sent", "2.0.0", "delivered", ""),
        Recipient(T0 + 3, "b@x", "bounced", "5.1.1", "hard", "550 no such user")]
    assert (q9.rcpt_count, q9.delivered, q9.flags & ORPHAN) == (0, 1, ORPHAN)


def test_the_clock_and_the_lock_order(db: tuple[Database, WritePath]) -> None:
    database, path = db
    with database.read() as conn:
        assert abs(path.now(conn) - time.time()) < 60
    keys = [("b", 2), ("a", 1), ("c", 3)]
    ordered = list(path.in_lock_order(keys))
    assert sorted(ordered) == sorted(keys)
    if database.dialect == "postgresql":
        assert ordered == sorted(keys)  # every writer locks in one order: no deadlocks
