"""The contract of a write path (dialects.py): SQLite's and PostgreSQL's keep concurrent
writers apart in their own ways, and must answer the batch writer the same."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from extrusion.scoring import migrate, schema
from extrusion.scoring.database import Database
from extrusion.scoring.dialects import PostgresWrites, SqliteWrites, WritePath, write_path
from extrusion.scoring.queueids import QUEUE_ID_REUSE_SECONDS
from extrusion.scoring.rows import MessageRow

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


Key = tuple[str, str]


def add(db: tuple[Database, WritePath], rows: list[MessageRow]
        ) -> tuple[set[Key], list[MessageRow], dict[Key, tuple[float, int]]]:
    database, path = db
    first: dict[Key, MessageRow] = {}
    again: list[MessageRow] = []
    for r in rows:
        if (r.mta, r.queue_id) in first:
            again.append(r)
        else:
            first[(r.mta, r.queue_id)] = r
    with database.write() as conn:
        return path.add_messages(conn, rows, first, again)


def stored(db: tuple[Database, WritePath]) -> list[tuple[str, float, str, int]]:
    m = schema.messages
    q = sa.select(m.c.queue_id, m.c.time, m.c.helo, m.c.rcpt_count).order_by(m.c.queue_id)
    with db[0].read() as conn:
        return [(str(a), float(b), str(c), int(d)) for a, b, c, d in conn.execute(q)]


def test_each_dialect_has_its_own_write_path(db: tuple[Database, WritePath]) -> None:
    database, path = db
    assert type(path) is {"sqlite": SqliteWrites, "postgresql": PostgresWrites}[database.dialect]
    assert path.name == database.dialect


def test_new_messages_are_inserted_and_repeated_reports_merged(
        db: tuple[Database, WritePath]) -> None:
    inserted, known, before = add(db, [
        MessageRow(T0, MTA, "Q1", BOT, rcpt_count=1),
        MessageRow(T0, MTA, "Q2", BOT, helo="pc", rcpt_count=2),
        MessageRow(T0 + 1, MTA, "Q2", BOT, rcpt_count=3),  # the same batch reports it again
    ])
    assert inserted == {(MTA, "Q1"), (MTA, "Q2")} and known == [] and before == {}
    assert stored(db) == [("Q1", T0, "", 1), ("Q2", T0, "pc", 3)]

    later = MessageRow(T0 + 5, MTA, "Q1", BOT, helo="laptop", rcpt_count=4)
    inserted, known, before = add(db, [later, MessageRow(T0 + 5, MTA, "Q3", BOT)])
    assert inserted == {(MTA, "Q3")}
    assert known == [later] and before == {(MTA, "Q1"): (T0, 1)}
    # The richer columns of the second report, the earliest time.
    assert stored(db)[0] == ("Q1", T0, "laptop", 4)


def test_a_queue_id_reused_after_days_replaces_the_old_row(
        db: tuple[Database, WritePath]) -> None:
    add(db, [MessageRow(T0, MTA, "Q1", BOT, helo="old", rcpt_count=5)])
    reused = MessageRow(T0 + QUEUE_ID_REUSE_SECONDS + 1, MTA, "Q1", BOT, rcpt_count=1)
    _, known, before = add(db, [reused])
    assert known == [reused] and before == {(MTA, "Q1"): (T0, 5)}
    assert stored(db) == [("Q1", reused.time, "", 1)]


def test_the_clock_and_the_lock_order(db: tuple[Database, WritePath]) -> None:
    database, path = db
    with database.read() as conn:
        assert abs(path.now(conn) - time.time()) < 60
    keys = [("b", 2), ("a", 1), ("c", 3)]
    ordered = list(path.in_lock_order(keys))
    assert sorted(ordered) == sorted(keys)
    if database.dialect == "postgresql":
        assert ordered == sorted(keys)  # every writer locks in one order: no deadlocks
