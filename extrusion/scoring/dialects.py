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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from extrusion.scoring.sqltext import (
    MESSAGE_INSERT,
    MESSAGE_NEW,
    PACKED_COLUMNS,
    STORED_MESSAGES,
    marks,
)

T = TypeVar("T")
MessageKey = tuple[int, str]  # (mta's name id, queue id)
Packed = tuple[Any, ...]  # a `messages` row, in sqltext.PACKED_COLUMNS order
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

    def add_messages(self, conn: Connection, keys: list[MessageKey],
                     fresh: Callable[[MessageKey], Packed]
                     ) -> tuple[set[MessageKey], dict[MessageKey, Packed]]:
        """Insert a row (`fresh(key)`, from this batch alone) for each key not stored yet;
        the keys this write inserted, and the stored rows of the others, locked until the
        transaction ends (the caller merges into them)."""


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

    def add_messages(self, conn: Connection, keys: list[MessageKey],
                     fresh: Callable[[MessageKey], Packed]
                     ) -> tuple[set[MessageKey], dict[MessageKey, Packed]]:
        stored = stored_messages(conn, self, keys)
        new = [k for k in keys if k not in stored]
        if new:
            conn.exec_driver_sql(MESSAGE_INSERT, [fresh(k) for k in new])
        return set(new), stored


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

    def add_messages(self, conn: Connection, keys: list[MessageKey],
                     fresh: Callable[[MessageKey], Packed]
                     ) -> tuple[set[MessageKey], dict[MessageKey, Packed]]:
        # One order of the keys for every writer (as for counters): two writers
        # inserting the same messages cannot then wait on each other. A writer whose
        # INSERT meets another's uncommitted row waits for it to commit, then locks it.
        ordered = sorted(keys)
        inserted = self._insert_new(conn, [fresh(k) for k in ordered])
        stored = stored_messages(conn, self, [k for k in ordered if k not in inserted],
                                 " ORDER BY queue_id FOR UPDATE")
        return inserted, stored

    def _insert_new(self, conn: Connection, rows: list[Packed]) -> set[MessageKey]:
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


_KEY_AT = (PACKED_COLUMNS.index("mta_id"), PACKED_COLUMNS.index("queue_id"))


def stored_messages(conn: Connection, path: WritePath, keys: Iterable[MessageKey],
                    suffix: str = "") -> dict[MessageKey, Packed]:
    """The stored rows with these (mta id, queue id), by key."""
    found = by_queue_ids(conn, path, STORED_MESSAGES, keys, suffix)
    return {(row[_KEY_AT[0]], row[_KEY_AT[1]]): tuple(row) for _mta, row in found}


def by_queue_ids(conn: Connection, path: WritePath, select: str,
                 keys: Iterable[MessageKey], suffix: str = "") -> Iterator[tuple[int, Any]]:
    """(mta id, row) of `select` for these (mta id, queue id): per MTA, queue ids in
    chunks; `suffix` ends each statement (an ORDER BY, a lock).

    Plain SQL on the driver's own cursor, in the caller's transaction: it runs at
    every flush, where building a SQLAlchemy statement with a new IN list, or even
    SQLAlchemy's result for plain SQL, would cost more than the query itself.
    """
    by_mta: dict[int, list[str]] = {}
    for mta, qid in keys:
        by_mta.setdefault(mta, []).append(qid)
    if not by_mta:
        return
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        # A lock (`suffix`) is taken in one key order; a plain read needs none.
        groups = sorted(by_mta.items()) if suffix else by_mta.items()
        for mta, qids in groups:
            for chunk in chunks(sorted(qids) if suffix else qids):
                cursor.execute(path.sql(
                    f"{select} WHERE mta_id = ? AND queue_id IN ({marks(len(chunk))})"
                    f"{suffix}"), (mta, *chunk))
                for row in cursor.fetchall():
                    yield mta, row
    finally:
        cursor.close()


def chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]
