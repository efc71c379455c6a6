"""Retention (scoring/retention.py) on SQLite and PostgreSQL: detail folded into
per-sender days without changing a report's totals, minute counters compacted into
days, and pruning in short transactions that let a concurrent writer through."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from extrusion.config import ConfigError, from_dict
from extrusion.report.load import Query, load_report
from extrusion.scoring import schema
from extrusion.scoring.retention import counter_boundary, detail_boundary
from extrusion.scoring.rows import Batch
from extrusion.scoring.store import Store

HL = 3600.0
DAY = 86400
T0 = 1_700_006_400  # a day's start (UTC)
SENDERS = ("sasl:alice@example.net", "ip:192.0.2.7", "sasl:carol@example.org")


@pytest.fixture
def store(store_url: str):  # type: ignore[no-untyped-def]
    s = Store(store_url)
    yield s
    s.close()


def month(days: int = 30, seed: int = 3) -> Batch:
    """A few messages a day per sender at random hours, each recipient queued and then
    delivered or bounced a little later (sometimes past midnight), with counters."""
    rnd = random.Random(seed)
    b = Batch()
    for day in range(days):
        for s, sender in enumerate(SENDERS):
            for m in range(rnd.randint(0, 6)):
                t = T0 + day * DAY + rnd.uniform(0, DAY)
                qid = f"Q{day:02d}{s}{m}"
                rcpts = [f"r{i}@example.com" for i in range(rnd.randint(1, 4))]
                b.messages.append({"time": t, "mta": "mx1", "queue_id": qid, "sender": sender,
                                   "envelope_from": "a@example.net", "rcpt_count": len(rcpts)})
                b.add_counter(sender, "messages", int(t // 60) * 60)
                for r in rcpts:
                    b.recipients.append({"time": t, "mta": "mx1", "queue_id": qid,
                                         "sender": sender, "recipient": r, "status": "queued"})
                    status = rnd.choice(("sent", "sent", "bounced", "deferred"))
                    b.recipients.append({"time": t + rnd.uniform(1, 600), "mta": "mx1",
                                         "queue_id": qid, "sender": sender, "recipient": r,
                                         "status": status})
                    b.add_counter(sender, "recipients", int(t // 60) * 60)
    return b


def snapshot(store: Store) -> dict[str, Any]:
    totals = store.report_totals(float(T0), float(T0 + 31 * DAY))
    return {k: (t.messages, t.recipients, t.delivered, t.failed, t.hours, t.blocks)
            for k, t in totals.items()}


def counters_since(store: Store, since: float) -> dict[tuple[str, str], dict[int, float]]:
    """Every minute bucket from `since` on: what a reader of a window from there sees."""
    return {(s, n): store.counters(s, n, since)
            for s in SENDERS for n in ("messages", "recipients")}


def counter_buckets(store: Store) -> list[int]:
    with db(store) as conn:
        return sorted(conn.execute(sa.select(schema.counters.c.bucket)).scalars())


@contextmanager
def db(store: Store) -> Iterator[sa.Connection]:
    eng = sa.create_engine(store.url)
    try:
        with eng.connect() as conn:
            yield conn
    finally:
        eng.dispose()


def count(store: Store, table: sa.Table) -> int:
    with db(store) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


def test_report_totals_are_the_same_after_folding(store: Store) -> None:
    store.write_batch(month(), HL)
    boundary = float(T0 + 23 * DAY + 8 * 3600)  # a day folded in part: its first two blocks
    before, kept = snapshot(store), counters_since(store, boundary)
    assert len(before) == 3 and all(v[0] > 20 for v in before.values())  # the premise
    assert min(counter_buckets(store)) < boundary  # the premise: older counters
    removed = store.prune(0.0, detail_before=boundary, batch=7)  # many small batches
    assert removed > 0
    assert snapshot(store) == before
    # Counters older than the boundary go (no reader sums them: reports count from
    # messages and days); every window from the boundary on reads what it read.
    assert min(counter_buckets(store)) >= boundary
    assert counters_since(store, 0.0) == kept
    with db(store) as conn:
        m, c = schema.messages, schema.counters
        assert conn.execute(sa.select(sa.func.min(m.c.time))).scalar() >= boundary
        assert conn.execute(sa.select(sa.func.count()).where(  # the day's rest stays
            c.c.bucket >= boundary, c.c.bucket < T0 + 24 * DAY)).scalar()
    assert count(store, schema.sender_days) <= 3 * 24
    # Folding again finds nothing; the totals do not count anything twice.
    assert store.prune(0.0, detail_before=boundary, batch=7) == 0
    assert snapshot(store) == before


def test_late_rows_add_into_a_folded_day(store: Store) -> None:
    b = month(days=2)
    store.write_batch(b, HL)
    store.prune(0.0, detail_before=float(T0 + 2 * DAY))
    first = snapshot(store)
    store.write_batch(month(days=2, seed=4), HL)  # a replay of old logs, say
    store.prune(0.0, detail_before=float(T0 + 2 * DAY))
    both = snapshot(store)
    for k in SENDERS:
        assert both[k][0] > first[k][0] and both[k][2] >= first[k][2]


def test_retention_deletes_folded_days(store: Store) -> None:
    store.write_batch(month(days=10), HL)
    store.prune(0.0, detail_before=float(T0 + 10 * DAY))
    assert count(store, schema.messages) == 0 and count(store, schema.sender_days) > 0
    store.prune(float(T0 + 5 * DAY), detail_before=float(T0 + 10 * DAY))
    with db(store) as conn:
        days = conn.execute(sa.select(schema.sender_days.c.day)).scalars().all()
    assert days and min(days) == T0 + 5 * DAY


def old_rows(n: int) -> Batch:
    b = Batch()
    for i in range(n):
        b.recipients.append({"time": 1000.0 + i, "mta": "mx1", "queue_id": f"Q{i // 4}",
                             "sender": SENDERS[0], "recipient": f"r{i}@example.com",
                             "status": "sent"})
    return b


def test_a_writer_waits_for_one_batch_at_most(store: Store) -> None:
    """A real write while a prune runs: it gets in between the prune's batches. Waiting
    = the prune's commits from the write's call to its first statement done (SQLite's
    BEGIN IMMEDIATE, the lock; on PostgreSQL an insert no deleted row could lock)."""
    for _ in range(4):
        store.write_batch(old_rows(5000), HL)
    with store._db.engine.connect(), store._db.engine.connect():
        pass  # two pooled connections: the write waits for no connection to be made
    commits: list[tuple[int, float]] = []
    statements: list[tuple[int, float]] = []
    sa.event.listen(store._db.engine, "commit",
                    lambda conn: commits.append((threading.get_ident(), time.monotonic())))
    sa.event.listen(store._db.engine, "after_cursor_execute",
                    lambda *a: statements.append((threading.get_ident(), time.monotonic())))
    pruner = threading.Thread(target=store.prune, args=(10**6,), kwargs={"batch": 200})
    pruner.start()
    me = threading.get_ident()
    try:
        while not any(t == pruner.ident for t, _ in commits):  # the prune has begun
            time.sleep(0.001)
        waits = []
        for i in range(5):
            b = Batch()
            b.messages.append({"time": 10.0**6 + i, "mta": "mx1", "queue_id": f"NEW{i}",
                               "sender": SENDERS[1], "rcpt_count": 1})
            start = time.monotonic()
            store.write_batch(b, HL)
            got_in = min(at for t, at in statements if t == me and at >= start)
            waits.append(sum(1 for t, at in commits
                             if t == pruner.ident and start <= at <= got_in))
        still_pruning = pruner.is_alive()
    finally:
        pruner.join()
    assert still_pruning, "the prune ended before the writes: make it longer"
    assert max(waits) <= 1, waits  # the batch under way when the write came
    assert count(store, schema.messages) == 5


def test_a_30_day_report_shows_the_same_activity_after_folding(store: Store) -> None:
    store.write_batch(month(), HL)
    q = Query(until=float(T0 + 30 * DAY), since=float(T0))
    before = load_report(store, q, generated_at=0.0).activity
    assert {a.key for a in before} == set(SENDERS)  # the premise
    store.prune(0.0, detail_before=float(T0 + 27 * DAY))
    assert load_report(store, q, generated_at=0.0).activity == before


@pytest.mark.parametrize("days", [0.5, 5000.0])
def test_detail_days_out_of_range_is_a_clear_error(days: float) -> None:
    with pytest.raises(ConfigError, match="detail_days must be 0"):
        from_dict({"store": {"detail_days": days}})


def test_the_boundary_is_a_block_start_at_least_detail_days_back() -> None:
    now = T0 + 5 * DAY + 5 * 3600 + 17.0
    b = detail_boundary(now, 1.0)
    assert b % (4 * 3600) == 0 and now - DAY - 4 * 3600 < b <= now - DAY


def test_two_hosts_folding_at_once_count_everything_once(store: Store) -> None:
    store.write_batch(month(), HL)
    before, kept = snapshot(store), counters_since(store, float(T0 + 29 * DAY))
    other = Store(store.url)
    try:
        threads = [threading.Thread(target=s.prune, args=(0.0,),
                                    kwargs={"detail_before": float(T0 + 29 * DAY), "batch": 5})
                   for s in (store, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.close()
    assert count(store, schema.messages) < 10  # the premise: nearly all of it folded
    assert snapshot(store) == before
    assert counters_since(store, 0.0) == kept


def test_a_prune_in_slices_ends_where_one_prune_would(store: Store) -> None:
    store.write_batch(month(days=6), HL)
    before = snapshot(store)
    slices, done = 0, False
    while not done:
        removed, done = store.prune_some(0.0, detail_before=float(T0 + 6 * DAY), batch=10,
                                         seconds=0.0)
        slices += 1
        assert removed <= 10 * 10  # a slice ends after its first full batch (10 steps)
    assert slices > 5 and count(store, schema.messages) == 0
    assert snapshot(store) == before


def test_minute_counters_go_after_two_hours_while_the_detail_covers_a_day(
        store: Store) -> None:
    b = month(days=10)
    b.counters.clear()  # the store's own counts only: one per message as it writes it
    store.write_batch(b, HL)
    now = float(T0 + 10 * DAY)
    last_day = {(s, n): store.counters(s, n, now - DAY)
                for s in SENDERS for n in ("messages", "recipients")}
    assert any(last_day.values())  # the premise: a day of counts to read back
    detail, minutes = detail_boundary(now, 7.0), counter_boundary(now, 7.0)
    assert minutes == float(int(now - 2 * 3600) // 3600 * 3600) > detail
    # Detail shorter than the window read: minutes kept past it, as before.
    assert counter_boundary(now, 0.5) == max(detail_boundary(now, 0.5),
                                             detail_boundary(now, 2.0))
    assert counter_boundary(now, 7.0, 5 * DAY) == minutes  # the messages cover it too
    kept = counters_since(store, minutes)
    assert min(counter_buckets(store)) < detail  # the premise: older counters
    store.prune(0.0, detail_before=detail, counters_before=minutes)
    assert counters_since(store, minutes) == kept  # the minutes kept as they were
    assert min(b for b in counter_buckets(store)) >= minutes  # older rows gone
    # A day back is read from the messages kept in detail: the same counts.
    assert {k: store.counters(*k, now - DAY) for k in last_day} == last_day
    with db(store) as conn:
        m = schema.messages
        first = conn.execute(sa.select(sa.func.min(m.c.time))).scalar()
        assert detail <= first < detail + DAY  # messages kept for the 7 days
    assert minutes <= min(counter_buckets(store))
