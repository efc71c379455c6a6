"""The connection to the store's database: engine, transactions, and what a failure means.

SQLite runs in WAL mode with a busy timeout, and every write transaction
starts with BEGIN IMMEDIATE: a deferred transaction that later wants to write
cannot wait for the lock (SQLite answers "database is locked" at once), so a
milter process and a policy process sharing one file would trip over each
other. Any failure to reach the database surfaces as `StoreUnavailable`, which
the engine answers by spooling; a row the database refuses for what it holds
(retrying cannot help) surfaces as `StoreRefused`, which the engine answers
by writing the batch in parts and setting the refused rows aside.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine, make_url

from extrusion.scoring.bounds import bound_text

PG_CONNECT_TIMEOUT = 5  # seconds
THROWAWAY_CACHE_KIB = 64 * 1024  # SQLite page cache of a non-durable store
DIALECTS = ("sqlite", "postgresql")


class StoreError(Exception):
    """A store problem, already phrased for the operator."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or written right now (retry later)."""


class StoreRefused(StoreError):
    """The database refused what was written (a constraint, a value it cannot hold):
    the same write would fail again, so retrying it is pointless."""


class Database:
    """One SQLAlchemy engine (a pool; thread-safe) and its read and write transactions."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000, durable: bool = True) -> None:
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in DIALECTS:
            raise StoreError(f"unsupported store url {parsed.render_as_string()!r}")
        self.engine = _make_engine(url, busy_timeout_ms, durable)
        self._sqlite_writers: AbstractContextManager[Any] = (
            threading.RLock() if self.dialect == "sqlite" else nullcontext())
        dbapi = self.engine.dialect.loaded_dbapi
        # Refusals the driver raises itself, outside SQLAlchemy's wrapping (psycopg's
        # own cursor for new messages; sqlite3 on an integer it cannot convert).
        self._refusals: tuple[type[BaseException], ...] = (
            exc.DataError, exc.IntegrityError, dbapi.DataError, dbapi.IntegrityError,
            UnicodeError, OverflowError)
        self._outages: tuple[type[BaseException], ...] = (
            exc.OperationalError, exc.InterfaceError, dbapi.OperationalError,
            dbapi.InterfaceError)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on leaving, rolled back on an exception."""
        try:
            # SQLite has one writer at a time and makes the others poll (1-100 ms):
            # this process's writers queue here instead, so a flush gets in as soon
            # as one of a prune's batches ends (retention.py), not at a lucky poll.
            with self._sqlite_writers, \
                    self.engine.connect().execution_options(extrusion_write=True) as conn, \
                    conn.begin():
                yield conn
        except self._outages as e:
            raise StoreUnavailable(_describe(e)) from e
        except self._refusals as e:
            raise StoreRefused(_describe_refusal(e)) from e

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: one consistent view for every query inside it."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except (exc.OperationalError, exc.InterfaceError) as e:
            raise StoreUnavailable(_describe(e)) from e


def _make_engine(url: str, busy_timeout_ms: int, durable: bool = True) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A database host that does not answer must not hang a flush: give up and spool.
        return sa.create_engine(url, pool_pre_ping=True,
                                connect_args={"connect_timeout": PG_CONNECT_TIMEOUT})
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000.0})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite: it would open deferred transactions.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if durable:
                cur.execute("PRAGMA journal_mode = WAL")
                # Safe with WAL (a power cut loses at most the last commits, never corrupts).
                cur.execute("PRAGMA synchronous = NORMAL")
            else:
                # A file nobody else reads and nobody keeps: the fsyncs were a third of a
                # replay, and the WAL's second copy of every page (and its checkpoints)
                # another tenth. The journal stays in memory so that a failed batch still
                # rolls back; the bigger cache keeps the indexes' hot pages in memory.
                cur.execute("PRAGMA journal_mode = MEMORY")
                cur.execute("PRAGMA synchronous = OFF")
                cur.execute(f"PRAGMA cache_size = -{THROWAWAY_CACHE_KIB}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("extrusion_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _describe(e: BaseException) -> str:
    orig = getattr(e, "orig", None)
    first = str(orig).strip().splitlines()[0] if orig is not None else str(e)
    return f"store unavailable: {first}"


def _describe_refusal(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()
    return f"store refused the write: {bound_text(text[0] if text else type(orig).__name__, 200)}"
