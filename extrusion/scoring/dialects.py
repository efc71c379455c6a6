"""One write path per database (SQLite, PostgreSQL) behind one small interface.

The two differ in how concurrent writers are kept apart. SQLite lets one writer
in at a time (BEGIN IMMEDIATE): rows read inside a write transaction are all
there is, and nothing needs a lock order. PostgreSQL lets writers run side by
side: every writer locks rows in one order (sorted keys, SELECT ... FOR UPDATE)
so that two cannot deadlock, the INSERT that creates a message row decides
which report of it came first, and the clock is the database's, so hosts with
skewed clocks agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from extrusion.scoring.rows import MessageRow
from extrusion.scoring.sqltext import MESSAGE_NEW, MESSAGE_ROWS, STORED_MESSAGES, marks

T = TypeVar("T")
MessageKey = tuple[str, str]  # (mta, queue id)
# Upper bound of bound parameters per statement (SQLite's limit is 32766).
CHUNK = 500
_PG_MIGRATION_LOCK = 0x65787472  # "extr": serialises concurrent upgrades


class WritePath(Protocol):
    """What the store's writes need to know of the database they write to."""

    name: str

    def sql(self, template: str) -> str:
        """A qmark-style statement in the driver's own parameter style."""

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that knows ON CONFLICT for `table`."""

    def now(self, conn: Connection) -> float:
        """The clock stamped on changed rows (changed_at), shared by every writer."""

    def in_lock_order(self, items: Iterable[T]) -> Iterable[T]:
        """`items` in the order every writer locks them (where the database needs one)."""

    def for_update(self, select: sa.Select[Any]) -> sa.Select[Any]:
        """`select` locking the rows it reads until the transaction ends."""

    def lock_migrations(self, conn: Connection) -> None:
        """Let one process at a time migrate the schema."""

    def add_messages(self, conn: Connection, rows: list[MessageRow],
                     first: dict[MessageKey, MessageRow], again: list[MessageRow]
                     ) -> tuple[set[MessageKey], list[MessageRow],
                                dict[MessageKey, tuple[float, int]]]:
        """Insert the new message rows and merge repeated reports into the stored ones.

        `first` holds each key's first row in the batch, `again` the later ones. Returns
        the keys this write inserted, the first rows whose key was stored before, and
        (time, rcpt_count) of those stored rows as they were."""


class SqliteWrites:
    """One writer at a time: read first, then one statement inserts and merges."""

    name = "sqlite"

    def sql(self, template: str) -> str:
        return template

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def now(self, conn: Connection) -> float:
        return time.time()

    def in_lock_order(self, items: Iterable[T]) -> Iterable[T]:
        # Sorting tens of thousands of keys per flush was a tenth of a replay's store time.
        return items

    def for_update(self, select: sa.Select[Any]) -> sa.Select[Any]:
        return select  # the write transaction holds the whole database already

    def lock_migrations(self, conn: Connection) -> None:
        """BEGIN IMMEDIATE already keeps other writers out."""

    def add_messages(self, conn: Connection, rows: list[MessageRow],
                     first: dict[MessageKey, MessageRow], again: list[MessageRow]
                     ) -> tuple[set[MessageKey], list[MessageRow],
                                dict[MessageKey, tuple[float, int]]]:
        stored = stored_messages(conn, self, first.values())
        inserted = {key for key in first if key not in stored}
        known = [r for key, r in first.items() if key in stored]
        if rows:  # one statement inserts the new rows and merges the others
            conn.exec_driver_sql(MESSAGE_ROWS, rows)
        return inserted, known, stored


class PostgresWrites:
    """Writers side by side: one lock order, and the INSERT that creates a row decides."""

    name = "postgresql"

    def __init__(self) -> None:
        self._statements: dict[str, str] = {}

    def sql(self, template: str) -> str:
        sql = self._statements.get(template)
        if sql is None:
            sql = template.replace("?", "%s").replace("%s /*json*/", "CAST(%s AS JSON)")
            self._statements[template] = sql
        return sql

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def now(self, conn: Connection) -> float:
        value = conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar()
        return float(value or 0.0)

    def in_lock_order(self, items: Iterable[T]) -> Iterable[T]:
        return sorted(items)  # type: ignore[type-var]

    def for_update(self, select: sa.Select[Any]) -> sa.Select[Any]:
        return select.with_for_update()

    def lock_migrations(self, conn: Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})

    def add_messages(self, conn: Connection, rows: list[MessageRow],
                     first: dict[MessageKey, MessageRow], again: list[MessageRow]
                     ) -> tuple[set[MessageKey], list[MessageRow],
                                dict[MessageKey, tuple[float, int]]]:
        # One order of the keys for every writer (as for counters): two writers
        # inserting the same messages cannot then wait on each other.
        inserted = self._insert_new(conn, [first[key] for key in sorted(first)])
        known = [r for key, r in first.items() if key not in inserted]
        stored = stored_messages(conn, self, known)
        merged = [*known, *again]
        if merged:
            conn.exec_driver_sql(self.sql(MESSAGE_ROWS), merged)
        return inserted, known, stored

    def _insert_new(self, conn: Connection, rows: list[MessageRow]) -> set[MessageKey]:
        """INSERT the rows whose (mta, queue id) is not stored yet; the keys inserted.
        psycopg's executemany sends the rows in one pipeline and hands back each row's
        RETURNING, which SQLAlchemy's executemany does not."""
        if not rows:
            return set()
        psycopg_connection: Any = conn.connection.dbapi_connection
        cursor = psycopg_connection.cursor()
        try:
            cursor.executemany(self.sql(MESSAGE_NEW), rows, returning=True)
            inserted: set[MessageKey] = set()
            while True:
                inserted.update((mta, qid) for mta, qid in cursor.fetchall())
                if not cursor.nextset():
                    return inserted
        finally:
            cursor.close()


def write_path(dialect: str) -> WritePath:
    """The write path for a SQLAlchemy backend name ("sqlite" or "postgresql")."""
    return PostgresWrites() if dialect == "postgresql" else SqliteWrites()


def stored_messages(conn: Connection, path: WritePath, rows: Iterable[MessageRow]
                    ) -> dict[MessageKey, tuple[float, int]]:
    """(time, rcpt_count) of the stored rows with these rows' (mta, queue id)."""
    found = by_queue_ids(conn, path, STORED_MESSAGES, ((r.mta, r.queue_id) for r in rows))
    return {(mta, qid): (t, n) for mta, (qid, t, n) in found}


def by_queue_ids(conn: Connection, path: WritePath, select: str,
                 keys: Iterable[MessageKey]) -> Iterator[tuple[str, Any]]:
    """(mta, row) of `select` for these (mta, queue id): per MTA, queue ids in chunks.

    Plain SQL on the driver's own cursor, in the caller's transaction: it runs at
    every flush, where building a SQLAlchemy statement with a new IN list, or even
    SQLAlchemy's result for plain SQL, would cost more than the query itself.
    """
    by_mta: dict[str, list[str]] = {}
    for mta, qid in keys:
        by_mta.setdefault(mta, []).append(qid)
    if not by_mta:
        return
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for mta, qids in by_mta.items():
            for chunk in chunks(qids):
                cursor.execute(path.sql(
                    f"{select} WHERE mta = ? AND queue_id IN ({marks(len(chunk))})"),
                    (mta, *chunk))
                for row in cursor.fetchall():
                    yield mta, row
    finally:
        cursor.close()


def chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]
