"""Pruning walks each table once (scoring/retention.py, issue 20): every batch starts
after the previous one's last key, on SQLite and PostgreSQL, and a prune in slices
goes on where its last slice stopped instead of starting again from the lowest key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from extrusion.scoring import retention, schema
from extrusion.scoring.names import text_of
from extrusion.scoring.rows import Batch
from extrusion.scoring.store import Store

HL = 3600.0
DAY = 86400
OLD, NEW = 1_700_006_400 + 60, 1_700_006_400 + 40 * DAY + 60  # minute buckets
HORIZON = float(1_700_006_400 + 30 * DAY)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def counters(keys: list[str], bucket: int) -> Batch:
    b = Batch()
    for k in keys:
        b.add_counter(k, "messages", bucket)
    return b


def mixed(n: int) -> Batch:
    """`n` old messages and recipients (and their counters: the store counts each message
    it writes), each between two kept ones in key order."""
    b = Batch()
    for i in range(2 * n):
        t = float(OLD if i % 2 else NEW)
        sender = f"sasl:user{i:05d}@example.net"
        b.messages.append({"time": t, "mta": "mx1", "queue_id": f"Q{i}", "sender": sender,
                           "rcpt_count": 1})
        b.recipients.append({"time": t + 1, "mta": "mx1", "queue_id": f"Q{i}",
                             "sender": sender, "recipient": f"r{i}@example.org",
                             "status": "sent"})
    return b


def left(store: Store, table: sa.Table, *columns: sa.Column[Any]) -> list[Any]:
    """The rows left (the counters' horizon row, sender id 0, left out)."""
    eng = sa.create_engine(store.url)
    try:
        with eng.connect() as conn:
            q = sa.select(*columns).select_from(table)
            if table is schema.counters:
                q = q.where(table.c.sender_id != schema.COUNTERS_HORIZON[0])
            rows = conn.execute(q).all()
            return sorted(r[0] if len(columns) == 1 else tuple(r) for r in rows)
    finally:
        eng.dispose()


def test_a_prune_in_slices_goes_on_where_it_stopped(store: Store) -> None:
    c = schema.counters
    # Walked in key order, which begins with the sender's name id: a@ named first.
    store.write_batch(counters(["sasl:a@example.net"], NEW), HL)
    store.write_batch(counters([f"sasl:m{i:02d}@example.net" for i in range(40)], OLD), HL)
    removed, done = store.prune_some(HORIZON, batch=10, seconds=0.0)
    assert (removed, done) == (10, False)  # the premise: one batch, then the slice ends
    # Old rows written meanwhile: one behind the walk's position, one ahead of it.
    store.write_batch(counters(["sasl:a@example.net", "sasl:z@example.net"], OLD), HL)
    while not done:
        removed, done = store.prune_some(HORIZON, batch=10, seconds=0.0)
    behind = left(store, c, c.c.sender_id, c.c.bucket)
    with store._db.read() as conn:  # behind: not walked again
        assert [(text_of(conn, [i])[i], b) for i, b in behind] == [
            ("sasl:a@example.net", OLD), ("sasl:a@example.net", NEW)]
    assert store.prune(HORIZON, batch=10) == 1  # a new prune starts from the first key
    assert left(store, c, c.c.bucket) == [NEW]


def test_a_call_for_earlier_horizons_starts_a_prune_of_its_own(store: Store) -> None:
    c = schema.counters
    store.write_batch(counters([f"sasl:m{i:02d}@example.net" for i in range(30)], OLD), HL)
    store.write_batch(counters(["sasl:x@example.net"], NEW), HL)
    assert store.prune_some(float(NEW + 60), batch=10, seconds=0.0) == (10, False)
    # Earlier horizons must not finish the walk begun with later ones (it takes more).
    # 20 counters, then the 30 old senders' names (no row names them any more)
    assert store.prune(HORIZON, batch=10) == 20 + 30
    assert left(store, c, c.c.bucket) == [NEW]


@pytest.mark.parametrize("detail", [False, True])
def test_batches_and_one_statement_leave_the_same_store(store_url: str, detail: bool) -> None:
    ends = []
    for batch in (None, 3):
        s = Store(store_url)
        try:
            s.write_batch(mixed(40), HL)
            before, detail_before = (0.0, HORIZON) if detail else (HORIZON, None)
            removed = s.prune(before, detail_before=detail_before, batch=batch)
            d = schema.sender_days
            ends.append((removed, left(s, schema.messages, schema.messages.c.time),
                         left(s, schema.counters, schema.counters.c.bucket),
                         left(s, d, d.c.sender_id, d.c.messages, d.c.delivered, d.c.hours)))
            s.prune(float(NEW + DAY), batch=None)  # empty for the next round
        finally:
            s.close()
    # The premise: every old row taken (a message, its recipient in its row, 2 counters).
    assert ends[0][0] == 3 * 40
    assert ends[0] == ends[1]


def old_messages(n: int) -> Batch:
    b = Batch()
    for i in range(n):
        b.messages.append({"time": OLD + i / 100, "mta": "mx1", "queue_id": f"Q{i}",
                           "sender": f"sasl:u{i % 50}@example.net", "rcpt_count": 1})
    return b


def test_each_backend_expires_in_batches_of_its_own_size(store: Store) -> None:
    """SQLite's writer waits for the batch under way: 5,000 rows; a PostgreSQL writer
    does not wait for rows being deleted (MVCC), so its batches are ten times larger.
    Folds take 5,000 rows a batch on both (each row feeds an upsert)."""
    deletes: list[str] = []
    sa.event.listen(store._db.engine, "before_cursor_execute",
                    lambda conn, cur, sql, *a: deletes.append(sql)
                    if sql.startswith("DELETE FROM messages") else None)
    store.write_batch(old_messages(12_000), HL)
    assert store.prune(HORIZON) >= 12_000
    size = retention.batch_size(store.dialect)
    assert size == (5000 if store.dialect == "sqlite" else 50_000)
    assert len(deletes) == -(-12_000 // size)  # 3 batches on SQLite, 1 on PostgreSQL
    assert left(store, schema.messages, schema.messages.c.time) == []
    store.write_batch(old_messages(12_000), HL)
    deletes.clear()
    assert store.prune(0.0, detail_before=HORIZON) >= 12_000
    folded = [d for d in deletes if "RETURNING" in d]  # not the expiry step's
    assert len(folded) == 3  # folded 5,000 at a time on either backend
    assert left(store, schema.messages, schema.messages.c.time) == []


def vm_steps(store: Store, **prune: Any) -> int:
    """SQLite virtual-machine steps a prune takes (in thousands): the work it does,
    whatever else the machine is doing."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    def on_begin(conn: sa.Connection) -> None:
        conn.connection.dbapi_connection.set_progress_handler(count, 1000)  # type: ignore[union-attr]

    sa.event.listen(store._db.engine, "begin", on_begin)
    try:
        store.prune(**prune)
    finally:
        sa.event.remove(store._db.engine, "begin", on_begin)
    return steps[0]


@pytest.mark.parametrize("detail", [False, True])
def test_small_batches_do_the_work_of_one_statement(tmp_path: Any, detail: bool) -> None:
    """2,000 old rows a table between kept ones, in batches of 20: a batch that began
    again from the lowest key would pass every kept row behind it (17-44 times the work
    of one statement when measured so). A batch's own statements and commit cost about
    as much again as its rows here, hence three times."""
    work = []
    for batch in (None, 20):
        with Store(f"sqlite:///{tmp_path / f'{batch}.db'}") as s:
            s.write_batch(mixed(2000), HL)
            before, detail_before = (0.0, HORIZON) if detail else (HORIZON, None)
            work.append(vm_steps(s, before=before, detail_before=detail_before, batch=batch))
    assert work[0] > 0 and work[1] < 3 * work[0], work
