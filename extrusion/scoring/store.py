"""The store: SQLite or PostgreSQL behind one small interface (SQLAlchemy Core).

Writes come in batches (`write_batch`, one transaction, executemany) because
the engine records tens of thousands of events per second; reads serve the
engine's refresh, the log followers' checkpoints, the CLI and the reports.

SQLite runs in WAL mode with a busy timeout, and every write transaction
starts with BEGIN IMMEDIATE: a deferred transaction that later wants to write
cannot wait for the lock (SQLite answers "database is locked" at once), so a
milter process and a policy process sharing one file would trip over each
other. Any failure to reach the database surfaces as `StoreUnavailable`, which
the engine answers by spooling; a row the database refuses for what it holds
(retrying cannot help) surfaces as `StoreRefused`, which the engine answers
by writing the batch in parts and setting the refused rows aside. Every value
is bounded to its column first (bounds.py), so that client-chosen lengths and
characters are never a reason for a refusal.
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from extrusion.checkpoint import Position
from extrusion.scoring import audit, failwindow, schema
from extrusion.scoring.bounds import bound_batch, bound_override, bound_row, bound_text
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.limits import DAY, HOUR, OthersUse
from extrusion.scoring.rows import (
    MESSAGE_COLUMNS,
    PIN_CLEAR,
    PIN_SET,
    QUEUED,
    RECIPIENT_COLUMNS,
    Batch,
    MessageRecord,
    OverrideRow,
    RecipientRecord,
    SenderRow,
    counter_bucket,
    merge_sender,
)

# Statuses after which a recipient needs no further delivery attempt.
FINAL_STATUSES = ("sent", "bounced", "expired", "rejected")
# Rows changed this long before a refresh began are read again: a writer stamps
# changed_at when its transaction starts but commits a little later.
REFRESH_OVERLAP_SECONDS = 5.0
# Leave out a recipient's "queued" row when its outcome is written in the same batch
# (a switch for benchmarks/storesize.py, which measures both).
ELIDE_QUEUED = True
# Upper bound of bound parameters per statement (SQLite's limit is 32766).
_CHUNK = 500
_PG_MIGRATION_LOCK = 0x65787472  # "extr": serialises concurrent `upgrade()`s
_DEADLOCK_RETRIES = 5
PG_CONNECT_TIMEOUT = 5  # seconds
THROWAWAY_CACHE_KIB = 64 * 1024  # SQLite page cache of a non-durable store
CREATE_RETRY_SECONDS = 0.05  # between attempts while another process creates the store


class StoreError(Exception):
    """A store problem, already phrased for the operator."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or written right now (retry later)."""


class StoreRefused(StoreError):
    """The database refused what was written (a constraint, a value it cannot hold):
    the same write would fail again, so retrying it is pointless."""


class Store:
    """All persistent state of extrusion. Thread-safe (one SQLAlchemy engine, a pool)."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000, create: bool = True,
                 durable: bool = True) -> None:
        """`durable=False` is for a throw-away SQLite file that only this process uses
        (a replay's): no fsync, no write-ahead log, a big page cache."""
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported store url {parsed.render_as_string()!r}")
        self._engine = _make_engine(url, busy_timeout_ms, durable)
        self._statements: dict[tuple[str, str], str] = {}
        dbapi = self._engine.dialect.loaded_dbapi
        # Refusals the driver raises itself, outside SQLAlchemy's wrapping (psycopg's
        # own cursor in _insert_new; sqlite3 on an integer it cannot convert).
        self._refusals: tuple[type[BaseException], ...] = (
            exc.DataError, exc.IntegrityError, dbapi.DataError, dbapi.IntegrityError,
            UnicodeError, OverflowError)
        self._outages: tuple[type[BaseException], ...] = (
            exc.OperationalError, exc.InterfaceError, dbapi.OperationalError,
            dbapi.InterfaceError)
        try:
            if create:
                self._create(busy_timeout_ms)
        except BaseException:
            self._engine.dispose()
            raise

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _create(self, busy_timeout_ms: int) -> None:
        """Bring the schema up to date, waiting out another process creating it too.

        Two processes opening a new SQLite file at once race to switch it to WAL
        and to migrate it; SQLite can answer the loser "database is locked" at
        once instead of calling the busy handler. Seen under load in CI.
        """
        deadline = time.monotonic() + busy_timeout_ms / 1000.0
        while True:
            try:
                self.upgrade()
                return
            except StoreUnavailable as e:
                if (self.dialect != "sqlite" or "locked" not in str(e)
                        or time.monotonic() > deadline):
                    raise
                self._engine.dispose()  # a connection half set up must not be reused
                time.sleep(CREATE_RETRY_SECONDS)

    def upgrade(self) -> str:
        """Apply pending migrations; returns the schema revision now in place."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            if self._revision(conn) != self.head_revision():
                command.upgrade(cfg, "head")
            return self._revision(conn) or ""

    @staticmethod
    def head_revision() -> str:
        from alembic.config import Config as AlembicConfig
        from alembic.script import ScriptDirectory

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        assert head is not None
        return head

    def revision(self) -> str | None:
        with self._read() as conn:
            return self._revision(conn)

    @staticmethod
    def _revision(conn: Connection) -> str | None:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()

    # --- transactions ------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            conn_cm = self._engine.connect().execution_options(extrusion_write=True)
            with conn_cm as conn, conn.begin():
                yield conn
        except self._outages as e:
            raise StoreUnavailable(_describe(e)) from e
        except self._refusals as e:
            raise StoreRefused(_describe_refusal(e)) from e

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except (exc.OperationalError, exc.InterfaceError) as e:
            raise StoreUnavailable(_describe(e)) from e

    @contextmanager
    def deferred_indexes(self, *, build: bool = True) -> Iterator[None]:
        """Load a throw-away store in bulk (a replay): the indexes that only later readers
        use are dropped for the load and built once at the end (or, with `build=False`
        for a store nobody reads again, never).

        Built from sorted data, an index costs a fraction of keeping it up to date row by
        row: that was two thirds of the cost of writing the outcomes. Indexes the engine
        itself reads while recording (queue id lookups, senders) stay. Not for a store
        that others read at the same time.
        """
        deferred = [ix for t in (schema.messages, schema.recipients, schema.counters)
                    for ix in sorted(t.indexes, key=lambda ix: str(ix.name))
                    if ix.name in _LOAD_DEFERRED_INDEXES]
        with self._write() as conn:
            for ix in deferred:
                ix.drop(conn)
        try:
            yield
        finally:
            if build:
                with self._write() as conn:
                    for ix in deferred:
                        ix.create(conn)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    # --- the engine's batched writes ---------------------------------------------------

    def write_batch(self, batch: Batch, half_life: float) -> list[SenderRow]:
        """Write everything in one transaction; returns the merged sender rows.

        Raises StoreUnavailable (retry later) or StoreRefused (never retry as is)."""
        batch = bound_batch(batch)
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                with self._write() as conn:
                    return self._write_batch(conn, batch, half_life)
            except StoreUnavailable as e:
                # Two PostgreSQL writers locking the same senders: retry the whole batch.
                if "deadlock" not in str(e) or attempt == _DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _write_batch(self, conn: Connection, batch: Batch, half_life: float) -> list[SenderRow]:
        # The bulk rows go straight to the driver's executemany: SQLAlchemy's per-row
        # parameter processing would cost more than the database does.
        counters = batch.counters
        known: set[tuple[str, str, str]] = set()  # recipients a first report already wrote
        if batch.messages or batch.message_rows:
            rows = [*self._rows(schema.messages, _MESSAGE_DEFAULTS, batch.messages),
                    *batch.message_rows]
            counters, repeated = self._write_messages(conn, rows, counters)
            if repeated:
                known = self._stored_recipients(conn, repeated)
        recipient_rows = batch.recipient_rows
        if batch.recipients:  # dict rows first, as tuples in the same column order
            recipient_rows = [*self._rows(schema.recipients, _RECIPIENT_DEFAULTS,
                                          batch.recipients), *recipient_rows]
        if ELIDE_QUEUED and recipient_rows:
            recipient_rows, answered = _without_answered(recipient_rows)
            if answered:
                # Written by an earlier flush: the outcome takes its place.
                conn.exec_driver_sql(self._sql("queued-answered", _QUEUED_ANSWERED),
                                     sorted(answered))
        if known:
            recipient_rows = [r for r in recipient_rows if not _known_queued(
                known, r[_R_MTA], r[_R_QID], r[_R_RECIPIENT], r[_R_STATUS])]
        if recipient_rows:
            conn.exec_driver_sql(self._sql("recipients-rows", _RECIPIENT_ROWS), recipient_rows)
        if counters:
            # PostgreSQL writers lock the rows in one order, so that two of them cannot
            # deadlock; SQLite lets one writer in at a time (BEGIN IMMEDIATE), and sorting
            # tens of thousands of keys per flush was a tenth of a replay's store time.
            items = counters.items()
            conn.exec_driver_sql(
                self._sql("counters", _COUNTERS_UPSERT),
                [(s, n, b, v) for (s, n, b), v in
                 (sorted(items) if self.dialect == "postgresql" else items)],
            )
        if batch.rate_use:
            conn.exec_driver_sql(
                self._sql("rate-use", _RATE_USE_UPSERT),
                [(s, m, b, r, n) for (s, m, b), (r, n) in
                 (sorted(batch.rate_use.items()) if self.dialect == "postgresql"
                  else batch.rate_use.items())],
            )
        merged = self._merge_senders(conn, batch, half_life) if batch.senders else []
        # After the senders' rows are locked: a second host's copy of a transition
        # waits for the first one's commit and sees its row (audit.py).
        changes = self._new_transitions(conn, batch.state_changes)
        if changes:
            conn.execute(schema.state_changes.insert(), changes)
        return merged

    def _new_transitions(self, conn: Connection, rows: list[dict[str, Any]]
                         ) -> list[dict[str, Any]]:
        """The batch's audit rows but the engine's transitions another host (or this
        batch) wrote already."""
        t = schema.state_changes
        kept: list[dict[str, Any]] = []
        for r in rows:
            if r.get("who") != audit.ENGINE:
                kept.append(r)
                continue
            at = float(r["time"])
            q = sa.select(t.c.time, t.c.old_state, t.c.new_state).where(
                t.c.sender == r["sender"], t.c.who == audit.ENGINE,
                t.c.time.between(at - audit.DUPLICATE_SECONDS, at + audit.DUPLICATE_SECONDS))
            recent = [(float(x[0]), x[1], x[2]) for x in conn.execute(q)]
            recent += [(float(k["time"]), k["old_state"], k["new_state"]) for k in kept
                       if k["sender"] == r["sender"] and k.get("who") == audit.ENGINE]
            if not audit.duplicate(at, r["old_state"], r["new_state"], recent):
                kept.append(r)
        return kept

    def _sql(self, name: str, template: str) -> str:
        """A statement in the driver's own parameter style (qmark or format), cached."""
        key = (name, template)
        sql = self._statements.get(key)
        if sql is None:
            sql = template.replace("?", "%s") if self.dialect == "postgresql" else template
            if self.dialect == "postgresql":
                sql = sql.replace("%s /*json*/", "CAST(%s AS JSON)")
            self._statements[key] = sql
        return sql

    @staticmethod
    def _rows(table: sa.Table, defaults: dict[str, Any],
              rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Dict rows as tuples in the table's column order, missing columns defaulted."""
        cols = [c.name for c in table.columns if c.name != "id"]
        get = operator.itemgetter(*cols)
        try:
            return [get(r) for r in rows]  # the engine's rows carry every column
        except KeyError:
            try:
                return [tuple(r[c] if c in r else defaults[c] for c in cols) for r in rows]
            except KeyError as e:
                required = ", ".join(c for c in cols if c not in defaults)
                raise StoreError(f"{table.name} row without {e} (needs {required})") from None

    def _write_messages(
        self, conn: Connection, rows: list[tuple[Any, ...]],
        counters: dict[tuple[str, str, int], float],
    ) -> tuple[dict[tuple[str, str, int], float], set[tuple[str, str]]]:
        """Message rows (`MESSAGE_COLUMNS` order), each message counted once.

        With the milter and the log feed both attached, every message is
        reported twice, by two processes that cannot see each other's memory.
        The row of the first report is inserted and counted ("messages" and
        "recipients" counters); a later one only merges its richer columns into
        it (`_MESSAGE_MERGE`) and adds only the recipients the first lacked.
        This holds when the two reports are written at the same moment: SQLite
        lets one writer in at a time (BEGIN IMMEDIATE), so the rows read first
        are all there is; on PostgreSQL the INSERT that created the row decides,
        and a second INSERT of the same key waits for the first one's commit.
        Returns the counters to add and the (mta, queue id) of repeated reports.
        """
        first: dict[tuple[str, str], tuple[Any, ...]] = {}
        again: list[tuple[Any, ...]] = []
        for r in rows:
            if (r[_M_MTA], r[_M_QID]) in first:
                again.append(r)  # a message reported twice within one batch: merged below
            else:
                first[(r[_M_MTA], r[_M_QID])] = r
        if self.dialect == "postgresql":
            # One order of the keys for every writer (as for counters): two writers
            # inserting the same messages cannot then wait on each other.
            new_rows = [first[key] for key in sorted(first)]
            inserted = self._insert_new(conn, new_rows)
            known = [r for key, r in first.items() if key not in inserted]
            stored = self._stored_messages(conn, known)
            merged = [*known, *again]
        else:
            stored = self._stored_messages(conn, list(first.values()))
            inserted = {key for key in first if key not in stored}
            known = [r for key, r in first.items() if key in stored]
            merged = rows  # one statement inserts the new rows and merges the others
        if merged:
            conn.exec_driver_sql(self._sql("messages-rows", _MESSAGE_ROWS), merged)
        counted = dict(counters)

        def count(row: tuple[Any, ...], messages: float, recipients: float) -> None:
            for name, n in (("messages", messages), ("recipients", recipients)):
                if n > 0:
                    k = (row[_M_SENDER], name, counter_bucket(row[_M_TIME]))
                    counted[k] = counted.get(k, 0.0) + n

        repeated: set[tuple[str, str]] = set()
        for key in inserted:
            count(first[key], 1.0, float(first[key][_M_RCPTS]))
        for r in known:
            key = (r[_M_MTA], r[_M_QID])
            t, rcpt_count = stored.get(key, (r[_M_TIME], 0))
            if r[_M_TIME] - t > QUEUE_ID_REUSE_SECONDS:
                count(r, 1.0, float(r[_M_RCPTS]))  # a queue id reused: another message
            else:
                repeated.add(key)
                count(r, 0.0, float(r[_M_RCPTS] - rcpt_count))  # recipients the first lacked
        return counted, repeated

    def _insert_new(self, conn: Connection, rows: list[tuple[Any, ...]]) -> set[tuple[str, str]]:
        """PostgreSQL: INSERT the rows whose (mta, queue id) is not stored yet; the keys
        inserted. psycopg's executemany sends the rows in one pipeline and hands back
        each row's RETURNING, which SQLAlchemy's executemany does not."""
        if not rows:
            return set()
        psycopg_connection: Any = conn.connection.dbapi_connection
        cursor = psycopg_connection.cursor()
        try:
            cursor.executemany(self._sql("messages-new", _MESSAGE_NEW), rows, returning=True)
            inserted: set[tuple[str, str]] = set()
            while True:
                inserted.update((mta, qid) for mta, qid in cursor.fetchall())
                if not cursor.nextset():
                    return inserted
        finally:
            cursor.close()

    def _stored_messages(self, conn: Connection, rows: list[tuple[Any, ...]]
                         ) -> dict[tuple[str, str], tuple[float, int]]:
        """(time, rcpt_count) of the stored rows with these rows' (mta, queue id)."""
        found = self._by_queue_ids(conn, "SELECT queue_id, time, rcpt_count FROM messages",
                                   ((r[_M_MTA], r[_M_QID]) for r in rows))
        return {(mta, qid): (t, n) for mta, (qid, t, n) in found}

    def _stored_recipients(self, conn: Connection, keys: set[tuple[str, str]]
                           ) -> set[tuple[str, str, str]]:
        """(mta, queue id, recipient) already stored for these messages."""
        found = self._by_queue_ids(
            conn, "SELECT DISTINCT queue_id, recipient FROM recipients", keys)
        return {(mta, qid, rcpt) for mta, (qid, rcpt) in found}

    def _by_queue_ids(self, conn: Connection, select: str,
                      keys: Iterable[tuple[str, str]]) -> Iterator[tuple[str, Any]]:
        """(mta, row) of `select` for these (mta, queue id): per MTA, queue ids in chunks.

        Plain SQL: it runs at every flush, where building and compiling a SQLAlchemy
        statement with a new IN list would cost more than the query itself.
        """
        by_mta: dict[str, list[str]] = {}
        for mta, qid in keys:
            by_mta.setdefault(mta, []).append(qid)
        for mta, qids in by_mta.items():
            for chunk in _chunks(qids):
                sql = self._sql(select, (
                    f"{select} WHERE mta = ? AND queue_id IN ({_marks(len(chunk))})"))
                for row in conn.exec_driver_sql(sql, (mta, *chunk)):
                    yield mta, row

    def _merge_senders(self, conn: Connection, batch: Batch, half_life: float) -> list[SenderRow]:
        t = schema.senders
        now = self._db_now(conn)
        keys = sorted(batch.senders)  # one lock order for every writer: no deadlocks
        # Placeholders first, so that SELECT ... FOR UPDATE has a row to lock even for
        # a sender two MTAs see for the first time at the same moment.
        conn.exec_driver_sql(
            self._sql("senders-placeholder", _SENDER_PLACEHOLDER),
            [(k, batch.senders[k].time, batch.senders[k].time, batch.senders[k].time, now)
             for k in keys],
        )
        current: dict[str, SenderRow] = {}
        for chunk in _chunks(keys):
            # The columns in SenderRow's field order: rows become SenderRows directly
            # (a flush of a busy server merges thousands of senders).
            sel = sa.select(*_SENDER_COLUMNS).where(t.c.key.in_(chunk)).order_by(t.c.key)
            if self.dialect == "postgresql":
                sel = sel.with_for_update()
            for r in conn.execute(sel):
                current[r[0]] = SenderRow(*r)
        merged = [merge_sender(current.get(k), batch.senders[k], half_life, now) for k in keys]
        conn.exec_driver_sql(
            self._sql("senders-update", _SENDER_UPDATE),
            [_sender_update_params(m) for m in merged],
        )
        self._sync_overrides(conn, batch, now)
        return merged

    def _sync_overrides(self, conn: Connection, batch: Batch, now: float) -> None:
        """Operator pins carried by the batch land in `overrides` too (the CLI's view)."""
        t = schema.overrides
        for d in batch.senders.values():
            if d.pin == PIN_CLEAR:
                conn.execute(t.delete().where(t.c.match == d.key))
            elif d.pin == PIN_SET and d.pinned:
                self._upsert_override(
                    conn,
                    OverrideRow(d.key, d.pinned, "", d.pinned_reason or "", d.pinned_by or "", now),
                )

    def _upsert_override(self, conn: Connection, row: OverrideRow) -> None:
        t = schema.overrides
        row = bound_override(row)
        values = {"match": row.match, "action": row.action, "limits": row.limits,
                  "reason": row.reason, "who": row.who, "created": row.created}
        ins = self._insert(t)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[t.c.match],
                set_={k: ins.excluded[k] for k in values if k != "match"},
            ),
            values,
        )

    def _insert(self, table: sa.Table) -> Any:
        mod = postgresql if self.dialect == "postgresql" else sqlite
        return mod.insert(table)

    def _db_now(self, conn: Connection) -> float:
        """The database's clock for changed_at, so MTAs with skewed clocks agree."""
        if self.dialect == "postgresql":
            value = conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar()
            return float(value or 0.0)
        return time.time()

    # --- senders -------------------------------------------------------------------------

    def sender(self, key: str) -> SenderRow | None:
        t = schema.senders
        with self._read() as conn:
            r = conn.execute(sa.select(t).where(t.c.key == key)).mappings().first()
        return None if r is None or r["version"] == 0 else _sender_row(r)

    def senders(
        self, state: str | None = None, *, min_score: float | None = None
    ) -> list[SenderRow]:
        """Senders (optionally in one state), highest stored score first."""
        t = schema.senders
        q = sa.select(t).where(t.c.version > 0).order_by(t.c.score.desc(), t.c.key)
        if state is not None:
            q = q.where(t.c.state == state)
        if min_score is not None:
            q = q.where(t.c.score >= min_score)
        with self._read() as conn:
            return [_sender_row(r) for r in conn.execute(q).mappings()]

    def changed_senders(self, since: float | None, *, quiet_before: float | None = None
                        ) -> tuple[list[SenderRow], float]:
        """Rows changed at or after `since` (None: all), and the mark for the next call.
        `quiet_before` (a start's load) leaves out the senders `ok`, unpinned and not
        scored since: the database skips them, not Python (most of a big store)."""
        t = schema.senders
        with self._read() as conn:
            mark = self._db_now(conn) - REFRESH_OVERLAP_SECONDS
            q = sa.select(t).where(t.c.version > 0)
            if since is not None:
                q = q.where(t.c.changed_at >= since)
            if quiet_before is not None:
                q = q.where(sa.or_(t.c.state != State.OK.value, t.c.pinned.is_not(None),
                                   t.c.score_time >= quiet_before))
            rows = [_sender_row(r) for r in conn.execute(q).mappings()]
        return rows, mark

    def put_sender(self, row: SenderRow) -> SenderRow:
        """Write one sender row as given (bumping its version); for admin tools."""
        t = schema.senders
        with self._write() as conn:
            now = self._db_now(conn)
            old = conn.execute(sa.select(t.c.version).where(t.c.key == row.key)).scalar()
            new = SenderRow(**{**_as_dict(row), "version": (old or 0) + 1, "changed_at": now})
            values = bound_row(t, _sender_values(new))
            ins = self._insert(t)
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=[t.c.key],
                    set_={k: ins.excluded[k] for k in values if k != "key"},
                ),
                values,
            )
            return new

    # --- notifications -----------------------------------------------------------------

    def claim_notifications(self, events: Sequence[tuple[str, str, float]], mta: str,
                            seconds: float) -> set[tuple[str, str]]:
        """The (sender, state) events of `events` (sender, state, time) that host `mta`
        is the one to notify: no other host claimed them within `seconds`
        (notify/claims.py). One upsert each; the row it leaves is the claim."""
        t = schema.notify_claims
        ins = self._insert(t)
        stmt = ins.on_conflict_do_update(
            index_elements=[t.c.sender, t.c.state],
            set_={"mta": ins.excluded.mta, "claimed_at": ins.excluded.claimed_at},
            where=sa.or_(t.c.claimed_at <= ins.excluded.claimed_at - seconds,
                         sa.and_(t.c.mta == ins.excluded.mta,
                                 t.c.claimed_at < ins.excluded.claimed_at)),
        ).returning(t.c.sender, t.c.state)
        won: set[tuple[str, str]] = set()
        with self._write() as conn:
            # One lock order for every host: two claiming the same senders cannot deadlock.
            for sender, state, at in sorted(events):
                values = bound_row(t, {"sender": sender, "state": state, "mta": mta,
                                       "claimed_at": at})
                if conn.execute(stmt, values).first() is not None:
                    won.add((sender, state))
        return won

    # --- overrides ---------------------------------------------------------------------

    def overrides(self) -> list[OverrideRow]:
        t = schema.overrides
        with self._read() as conn:
            return [
                OverrideRow(r.match, r.action, r.limits, r.reason, r.who, r.created)
                for r in conn.execute(sa.select(t).order_by(t.c.match))
            ]

    def set_override(self, row: OverrideRow) -> None:
        with self._write() as conn:
            self._upsert_override(conn, row)

    def delete_override(self, match: str) -> bool:
        t = schema.overrides
        with self._write() as conn:
            return bool(conn.execute(t.delete().where(t.c.match == match)).rowcount)

    # --- audit trail -------------------------------------------------------------------

    def add_state_change(self, change: StateChange) -> None:
        with self._write() as conn:
            conn.execute(schema.state_changes.insert(),
                         [bound_row(schema.state_changes, state_change_row(change))])

    def state_changes(
        self,
        sender: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[StateChange]:
        """The audit trail, oldest first."""
        t = schema.state_changes
        q = sa.select(t).order_by(t.c.time, t.c.id)
        if sender is not None:
            q = q.where(t.c.sender == sender)
        if since is not None:
            q = q.where(t.c.time >= since)
        if until is not None:
            q = q.where(t.c.time <= until)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            return [
                StateChange(
                    time=r.time, sender=r.sender, old=State(r.old_state), new=State(r.new_state),
                    score=r.score, reason=r.reason, who=r.who, evidence=dict(r.evidence or {}),
                )
                for r in conn.execute(q)
            ]

    # --- messages and outcomes ----------------------------------------------------------

    def message(self, queue_id: str, mta: str = "") -> MessageRecord | None:
        """The latest submission recorded under (mta, queue_id), without recipients."""
        t = schema.messages
        q = (
            sa.select(t)
            .where(t.c.mta == mta, t.c.queue_id == queue_id)
            .order_by(t.c.time.desc(), t.c.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            r = conn.execute(q).mappings().first()
        return None if r is None else _message_record(r)

    def sender_for_queue_id(self, queue_id: str, mta: str = "") -> str | None:
        m = self.message(queue_id, mta)
        return None if m is None else m.sender

    def undelivered_queue_ids(self, sender: str, mta: str | None = None) -> list[str]:
        """Queue ids of the sender's messages with recipients still lacking a final outcome."""
        m, r = schema.messages, schema.recipients
        finished = (
            sa.select(sa.func.count(sa.distinct(r.c.recipient)))
            .where(r.c.mta == m.c.mta, r.c.queue_id == m.c.queue_id,
                   r.c.status.in_(FINAL_STATUSES))
            .scalar_subquery()
        )
        q = sa.select(m.c.queue_id).where(m.c.sender == sender, finished < m.c.rcpt_count)
        if mta is not None:
            q = q.where(m.c.mta == mta)
        with self._read() as conn:
            return list(dict.fromkeys(conn.execute(q.order_by(m.c.time, m.c.id)).scalars()))

    def messages(
        self, sender: str, since: float = 0.0, until: float | None = None
    ) -> list[MessageRecord]:
        """The sender's messages in [since, until] with every recipient row, oldest first.

        Outcomes recorded for queue ids whose submission was never seen appear as
        messages of their own (envelope details empty).
        """
        m, r = schema.messages, schema.recipients
        until = until if until is not None else float("inf")
        mq = sa.select(m).where(m.c.sender == sender, m.c.time >= since)
        queues = sa.select(m.c.mta, m.c.queue_id).where(m.c.sender == sender, m.c.time >= since)
        orphan = sa.select(r).where(
            r.c.sender == sender, r.c.time >= since,
            ~sa.exists().where(m.c.mta == r.c.mta, m.c.queue_id == r.c.queue_id),
        )
        if until != float("inf"):
            mq = mq.where(m.c.time <= until)
            queues = queues.where(m.c.time <= until)
            orphan = orphan.where(r.c.time <= until)
        rq = sa.select(r).where(sa.tuple_(r.c.mta, r.c.queue_id).in_(queues.distinct()))
        with self._read() as conn:
            msgs = list(conn.execute(mq.order_by(m.c.time, m.c.id)).mappings())
            by_queue: dict[tuple[str, str], list[RecipientRecord]] = {}
            for row in conn.execute(rq.order_by(r.c.time, r.c.id)).mappings():
                by_queue.setdefault((row["mta"], row["queue_id"]), []).append(_recipient(row))
            orphans: dict[tuple[str, str], list[Any]] = {}
            for row in conn.execute(orphan.order_by(r.c.time, r.c.id)).mappings():
                orphans.setdefault((row["mta"], row["queue_id"]), []).append(row)
        out = [
            _message_record(row, tuple(by_queue.get((row["mta"], row["queue_id"]), ())))
            for row in msgs
        ]
        for (mta, qid), rows in orphans.items():
            rcpts = tuple(_recipient(x) for x in rows)
            out.append(MessageRecord(
                time=rows[0]["time"], mta=mta, queue_id=qid, sender=sender,
                rcpt_count=len({x.recipient for x in rcpts}), recipients=rcpts,
            ))
        out.sort(key=lambda x: x.time)
        return out

    # --- counters ------------------------------------------------------------------------

    def counters(self, sender: str, name: str, since: float = 0.0) -> dict[int, float]:
        """{bucket start: value} of one counter from `since` on."""
        t = schema.counters
        q = sa.select(t.c.bucket, t.c.value).where(
            t.c.sender == sender, t.c.name == name, t.c.bucket >= int(since)
        )
        with self._read() as conn:
            return {int(b): float(v) for b, v in conn.execute(q.order_by(t.c.bucket))}

    def others_use(self, mta: str, now: float, recent_seconds: float
                   ) -> dict[str, OthersUse]:
        """What hosts other than `mta` let each restricted sender send in the last hour,
        day and `recent_seconds` (scoring/shared.py): one grouped query per refresh."""
        t = schema.rate_use
        hour, recent = now - HOUR, now - recent_seconds

        def within(since: float, col: sa.Column[int]) -> Any:
            return sa.func.sum(sa.case((t.c.bucket >= int(since), col), else_=0))

        q = (sa.select(t.c.sender, within(hour, t.c.recipients), sa.func.sum(t.c.recipients),
                       within(hour, t.c.messages), sa.func.sum(t.c.messages),
                       within(recent, t.c.recipients))
             .where(t.c.mta != mta, t.c.bucket >= int(now - DAY)).group_by(t.c.sender))
        with self._read() as conn:
            return {r[0]: OthersUse(*(int(v or 0) for v in r[1:])) for r in conn.execute(q)}

    def prune(self, before: float) -> int:
        """Delete counters, messages, outcomes and baselines older than `before`; returns
        rows removed (a baseline not updated since is a sender gone quiet)."""
        removed = 0
        with self._write() as conn:
            removed += conn.execute(
                schema.counters.delete().where(schema.counters.c.bucket < int(before))
            ).rowcount
            for t in (schema.recipients, schema.messages):
                removed += conn.execute(t.delete().where(t.c.time < before)).rowcount
            b = schema.sender_baselines
            removed += conn.execute(b.delete().where(b.c.updated < before)).rowcount
            removed += conn.execute(schema.rate_use.delete().where(
                schema.rate_use.c.bucket < int(before))).rowcount
            removed += conn.execute(schema.failure_windows.delete().where(
                schema.failure_windows.c.time < before)).rowcount
        return removed

    def save_failure_windows(self, mta: str, snapshots: list[failwindow.Snapshot],
                             prune_before: float | None = None) -> None:
        """This host's failure windows (scoring/failwindow.py), and its stale rows gone."""
        with self._write() as conn:
            failwindow.save(conn, self.dialect, mta, snapshots)
            if prune_before is not None:
                failwindow.prune(conn, mta, prune_before)

    def others_failures(self, mta: str, since: float) -> list[tuple[str, int, int, float]]:
        """The other hosts' failure windows taken since `since` (scoring/failwindow.py)."""
        with self._read() as conn:
            return failwindow.others(conn, mta, since)

    # --- per-sender baselines ----------------------------------------------------------

    def save_baselines(self, baselines: dict[str, dict[str, Any]], now: float) -> None:
        """Write each sender's baseline whole (the latest one wins: it is a summary)."""
        if not baselines:
            return
        t = schema.sender_baselines
        ins = self._insert(t)
        rows = [bound_row(t, {"key": k, "baseline": v, "updated": now})
                for k, v in sorted(baselines.items())]  # one lock order for PostgreSQL
        with self._write() as conn:
            conn.execute(ins.on_conflict_do_update(
                index_elements=[t.c.key],
                set_={"baseline": ins.excluded.baseline, "updated": ins.excluded.updated},
            ), rows)

    def baselines(self, limit: int) -> dict[str, dict[str, Any]]:
        """The `limit` most recently updated baselines, sender key -> stored form."""
        t = schema.sender_baselines
        with self._read() as conn:
            rows = conn.execute(sa.select(t.c.key, t.c.baseline)
                                .order_by(t.c.updated.desc()).limit(limit)).all()
        return {str(k): v for k, v in rows if isinstance(v, dict)}

    # --- log follower checkpoints ------------------------------------------------------

    def get_checkpoint(self, name: str) -> Position | None:
        """Where follower `name` stopped, or None."""
        t = schema.checkpoints
        with self._read() as conn:
            r = conn.execute(sa.select(t.c.inode, t.c.offset, t.c.reached, t.c.device)
                             .where(t.c.name == name)).first()
        return None if r is None else Position(int(r[0]), int(r[1]), int(r[2]), int(r[3]))

    def set_checkpoint(self, name: str, position: Position) -> None:
        position.check(name)
        t = schema.checkpoints
        ins = self._insert(t)
        values = bound_row(t, {"name": name, **position._asdict(), "updated": time.time()})
        with self._write() as conn:
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=[t.c.name],
                    set_={c: ins.excluded[c]
                          for c in ("inode", "offset", "reached", "device", "updated")},
                ),
                values,
            )

    def outcomes_recorded(self, mta: str, queue_id: str) -> set[tuple[str, str, float]]:
        """(recipient, status, log time) of the outcome rows stored for one message:
        what a log read again after a crash must not record twice."""
        r = schema.recipients
        q = sa.select(r.c.recipient, r.c.status, r.c.time).where(
            r.c.mta == mta, r.c.queue_id == queue_id, r.c.status != QUEUED)
        with self._read() as conn:
            return {(rcpt, status, float(t)) for rcpt, status, t in conn.execute(q)}


# --- helpers ---------------------------------------------------------------------------------


def open_store(cfg: Any) -> Store:
    """A Store for a loaded `extrusion.config.Config`."""
    return Store(cfg.store.url, busy_timeout_ms=cfg.store.busy_timeout_ms)


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


def _q(name: str) -> str:
    return f'"{name}"'


def _without_answered(rows: list[tuple[Any, ...]]
                      ) -> tuple[list[tuple[Any, ...]], set[tuple[str, str, str]]]:
    """A recipient's "queued" row says nothing its outcome does not (it was a third of a
    quiet sender's store, benchmarks/storesize.py): the rows without each "queued" one
    whose outcome is among them, and the (mta, queue id, recipient) of the outcomes whose
    "queued" row an earlier batch wrote, to delete."""
    # A recipient refused before it had a queue id (NOQUEUE: half an MX's rows) never had
    # a "queued" row: deleting one by (mta, "", recipient) walked every earlier NOQUEUE row.
    answered = {(r[_R_MTA], r[_R_QID], r[_R_RECIPIENT]) for r in rows
                if r[_R_STATUS] != QUEUED and r[_R_QID]}
    if not answered:
        return rows, answered
    queued = {(r[_R_MTA], r[_R_QID], r[_R_RECIPIENT]) for r in rows if r[_R_STATUS] == QUEUED}
    if not queued:
        return rows, answered
    kept = [r for r in rows if r[_R_STATUS] != QUEUED
            or (r[_R_MTA], r[_R_QID], r[_R_RECIPIENT]) not in answered]
    return kept, answered - queued


def _known_queued(known: set[tuple[str, str, str]], mta: str, queue_id: str, recipient: str,
                  status: str) -> bool:
    """A "queued" row for a recipient an earlier report of the message already recorded."""
    return status == QUEUED and (mta, queue_id, recipient) in known


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


_SENDER_FIELDS = {
    "key": "key", "class": "cls", "state": "state", "score": "score",
    "score_time": "score_time", "first_seen": "first_seen", "last_seen": "last_seen",
    "state_since": "state_since", "pinned": "pinned", "pinned_by": "pinned_by",
    "pinned_reason": "pinned_reason", "findings": "findings", "version": "version",
    "changed_at": "changed_at",
}


def _sender_row(r: Any) -> SenderRow:
    return SenderRow(**{attr: r[col] for col, attr in _SENDER_FIELDS.items()})


# senders columns in SenderRow's field order (a test checks the two agree).
_SENDER_COLUMNS = tuple(schema.senders.c[col] for col in _SENDER_FIELDS)
# _SENDER_UPDATE's parameters: every column but the key, then the key.
_SENDER_UPDATE_GET = operator.attrgetter(
    *(attr for col, attr in _SENDER_FIELDS.items() if col != "key"), "key")
_FINDINGS_AT = [col for col in _SENDER_FIELDS if col != "key"].index("findings")


def _sender_update_params(row: SenderRow) -> tuple[Any, ...]:
    params = list(_SENDER_UPDATE_GET(row))
    params[_FINDINGS_AT] = _json_or(params[_FINDINGS_AT])  # the one JSON column
    return tuple(params)


def _sender_values(row: SenderRow) -> dict[str, Any]:
    return {col: getattr(row, attr) for col, attr in _SENDER_FIELDS.items()}


def _as_dict(row: SenderRow) -> dict[str, Any]:
    return {attr: getattr(row, attr) for attr in _SENDER_FIELDS.values()}


# Secondary indexes nothing reads while the engine records a replay (see deferred_indexes).
_LOAD_DEFERRED_INDEXES = frozenset({
    "ix_messages_sender_time", "ix_recipients_queue", "ix_recipients_sender_time",
    "ix_counters_bucket",
})

_MESSAGE_DEFAULTS: dict[str, Any] = {
    "mta": "", "envelope_from": "", "helo": "", "client_addr": "", "client_name": "",
    "size": 0, "rcpt_count": 0, "message_id": "", "null_sender": False, "auto_reply": False,
    "list_like": False, "list_id": "",
}
_RECIPIENT_DEFAULTS: dict[str, Any] = {
    "mta": "", "sender": "", "outcome_class": "", "dsn": "", "reply": "", "relay": "",
}


# Postfix reuses a short queue id once its message left the queue, which happens
# within maximal_queue_lifetime (5 days): rows further apart are different messages.
QUEUE_ID_REUSE_SECONDS = 6 * 86400.0


def _message_merge() -> str:
    """ON CONFLICT clause that makes a second report of a message (the milter's and the
    log feed's, from two processes) one row: each column keeps the richer value — a
    HELO, a client name, header flags only the milter sees; the most recipients; the
    earliest time. A row older than a queue id can live is replaced instead."""
    old, new = "messages.", "excluded."

    def text(c: str) -> str:
        return f"CASE WHEN {old}{c} = '' THEN {new}{c} ELSE {old}{c} END"

    def most(c: str) -> str:
        return f"CASE WHEN {new}{c} > {old}{c} THEN {new}{c} ELSE {old}{c} END"

    merged = {
        "time": f"CASE WHEN {new}time < {old}time THEN {new}time ELSE {old}time END",
        # A log says `unknown` where the milter may know the name.
        "client_name": f"CASE WHEN {old}client_name IN ('', 'unknown') "
                       f"AND {new}client_name <> '' THEN {new}client_name "
                       f"ELSE {old}client_name END",
        **{c: text(c) for c in ("sender", "envelope_from", "helo", "client_addr",
                                "message_id", "list_id")},
        **{c: most(c) for c in ("size", "rcpt_count")},
        **{c: f"{old}{c} OR {new}{c}" for c in ("null_sender", "auto_reply", "list_like")},
    }
    reused = f"{new}time - {old}time > {QUEUE_ID_REUSE_SECONDS}"
    sets = ", ".join(
        f"{_q(c)} = CASE WHEN {reused} THEN {new}{_q(c)} ELSE {merged[c]} END"
        for c in MESSAGE_COLUMNS if c not in ("mta", "queue_id")
    )
    return f" ON CONFLICT (mta, queue_id) DO UPDATE SET {sets}"


_MESSAGE_MERGE = _message_merge()
# Positions in the tuple rows (MESSAGE_COLUMNS / RECIPIENT_COLUMNS order).
_M_TIME, _M_MTA, _M_QID, _M_SENDER, _M_RCPTS = (
    MESSAGE_COLUMNS.index(c) for c in ("time", "mta", "queue_id", "sender", "rcpt_count"))
_R_MTA, _R_QID, _R_RECIPIENT, _R_STATUS = (
    RECIPIENT_COLUMNS.index(c) for c in ("mta", "queue_id", "recipient", "status"))
_MESSAGE_NEW = (
    f"INSERT INTO messages ({', '.join(_q(c) for c in MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in MESSAGE_COLUMNS)}) "
    "ON CONFLICT (mta, queue_id) DO NOTHING RETURNING mta, queue_id"
)
_MESSAGE_ROWS = (
    f"INSERT INTO messages ({', '.join(_q(c) for c in MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in MESSAGE_COLUMNS)})" + _MESSAGE_MERGE
)
_RECIPIENT_ROWS = (
    f"INSERT INTO recipients ({', '.join(_q(c) for c in RECIPIENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in RECIPIENT_COLUMNS)})"
)
_COUNTERS_UPSERT = (
    "INSERT INTO counters (sender, name, bucket, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (sender, name, bucket) DO UPDATE SET value = counters.value + excluded.value"
)
_QUEUED_ANSWERED = (
    "DELETE FROM recipients WHERE mta = ? AND queue_id = ? AND recipient = ? "
    "AND status = 'queued'"
)
_RATE_USE_UPSERT = (
    "INSERT INTO rate_use (sender, mta, bucket, recipients, messages) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (sender, mta, bucket) DO UPDATE SET "
    "recipients = rate_use.recipients + excluded.recipients, "
    "messages = rate_use.messages + excluded.messages"
)
_SENDER_PLACEHOLDER = (
    'INSERT INTO senders (key, "class", state, score, score_time, first_seen, last_seen, '
    "state_since, findings, version, changed_at) "
    "VALUES (?, 'default', 'ok', 0.0, 0.0, ?, ?, ?, '{}', 0, ?) "
    "ON CONFLICT (key) DO NOTHING"
)
_SENDER_UPDATE = "UPDATE senders SET {} WHERE key = ?".format(
    ", ".join(
        f"{_q(col)} = ? /*json*/" if col == "findings" else f"{_q(col)} = ?"
        for col in _SENDER_FIELDS if col != "key"
    )
)


def _json_or(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict) else value


def _message_record(r: Any, recipients: tuple[RecipientRecord, ...] = ()) -> MessageRecord:
    return MessageRecord(
        time=r["time"], mta=r["mta"], queue_id=r["queue_id"], sender=r["sender"],
        envelope_from=r["envelope_from"], helo=r["helo"], client_addr=r["client_addr"],
        client_name=r["client_name"], size=r["size"], rcpt_count=r["rcpt_count"],
        message_id=r["message_id"], null_sender=bool(r["null_sender"]),
        auto_reply=bool(r["auto_reply"]), list_like=bool(r["list_like"]), list_id=r["list_id"],
        recipients=recipients,
    )


def _recipient(r: Any) -> RecipientRecord:
    return RecipientRecord(
        time=r["time"], recipient=r["recipient"], status=r["status"],
        outcome_class=r["outcome_class"], dsn=r["dsn"], reply=r["reply"], relay=r["relay"],
    )


def state_change_row(change: StateChange) -> dict[str, Any]:
    """A StateChange as a `state_changes` row (also used by the engine's batches)."""
    return {
        "time": change.time, "sender": change.sender, "old_state": change.old.value,
        "new_state": change.new.value, "score": change.score, "reason": change.reason,
        "who": change.who, "evidence": change.evidence,
    }
