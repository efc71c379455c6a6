"""Migration 0008 (the smaller store) on SQLite and PostgreSQL: a store at 0007 with
rows in every table it rebuilds or re-indexes upgrades with every row, every report
total and every counter unchanged, and takes writes and folds afterwards."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from extrusion.scoring import schema
from extrusion.scoring.rows import Batch
from extrusion.scoring.store import Store

HL = 3600.0
DAY = 86400
T0 = 1_700_006_400  # a day's start (UTC)
BOT, ALICE = "ip:192.0.2.66", "sasl:alice@example.net"


def rows_at_0007(conn: sa.Connection) -> None:
    conn.execute(schema.messages.insert(), [
        {"time": T0 + 10 * DAY + i, "mta": "mx1", "queue_id": f"Q{i}", "sender": BOT,
         "rcpt_count": 2} for i in range(3)])
    conn.execute(schema.recipients.insert(), [
        {"time": T0 + 10 * DAY + i + 5, "mta": "mx1", "queue_id": f"Q{i}", "sender": BOT,
         "recipient": f"r{j}@example.org", "status": "sent" if j else "bounced",
         "dsn": "2.0.0" if j else "5.1.1", "reply": "250 ok" if j else "550 no"}
        for i in range(3) for j in range(2)])
    conn.execute(schema.counters.insert(), [
        {"sender": s, "name": n, "bucket": T0 + 10 * DAY + 60 * i, "value": float(i + 1)}
        for s in (BOT, ALICE) for n in ("messages", "sent") for i in range(4)])
    conn.execute(schema.sender_days.insert(), [
        {"sender": s, "day": T0 + d * DAY, "messages": 5, "recipients": 9, "delivered": 8,
         "failed": 1, "hours": 0b1011} for s in (BOT, ALICE) for d in range(3)])


def seen(store: Store) -> dict[str, Any]:
    totals = store.report_totals(float(T0), float(T0 + 11 * DAY))
    return {
        "totals": {k: (t.messages, t.recipients, t.delivered, t.failed, t.hours, t.blocks)
                   for k, t in totals.items()},
        "counters": {(s, n): store.counters(s, n) for s in (BOT, ALICE)
                     for n in ("messages", "sent")},
        "messages": store.messages(BOT, 0.0),
        "outcomes": store.outcomes_recorded("mx1", "Q1"),
    }


def test_upgrade_from_0007_keeps_every_row(store_url: str) -> None:
    store = Store(store_url, create=False)
    try:
        assert store.upgrade("0007") == "0007"
        engine = sa.create_engine(store_url)
        try:
            with engine.begin() as conn:
                rows_at_0007(conn)
        finally:
            engine.dispose()
        before = seen(store)
        assert before["totals"] == {ALICE: (15, 27, 24, 3, 9, 3),  # the premise
                                   BOT: (18, 33, 27, 6, 10, 4)}
        assert store.upgrade() == Store.head_revision() == "0008"
        assert seen(store) == before
        engine = sa.create_engine(store_url)
        try:
            with engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
        finally:
            engine.dispose()
        b = Batch()  # the same counter again adds into the copied row
        b.add_counter(BOT, "sent", T0 + 10 * DAY, 10.0)
        store.write_batch(b, HL)
        assert store.counters(BOT, "sent")[T0 + 10 * DAY] == 11.0
        store.prune(0.0, detail_before=float(T0 + 11 * DAY))
        assert store.messages(BOT, 0.0) == []  # folded into its day
        assert seen(store)["totals"] == before["totals"]
    finally:
        store.close()
