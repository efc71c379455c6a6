"""Migrations 0008 (the smaller store) and 0009 (the packed store) on SQLite and
PostgreSQL: a store of the earlier revision with rows in every table it rebuilds
upgrades with every row, every report total, outcome and counter unchanged (but what
0009 no longer keeps: Message-IDs, relays, a delivery's remote reply), its schema is
then schema.py's, and it takes writes and folds afterwards."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from extrusion.scoring import schema
from extrusion.scoring.rows import Batch, RecipientRow, StoredRecipient
from extrusion.scoring.store import Store

from .storeview import (
    COUNTERS_0008,
    MESSAGES_0008,
    RECIPIENTS_0008,
    SENDER_DAYS_0008,
    rows_0008,
)

HL = 3600.0
DAY = 86400
T0 = 1_700_006_400  # a day's start (UTC)
T = T0 + 10 * DAY  # the detail's day
BOT, ALICE = "ip:192.0.2.66", "sasl:alice@example.net"
# What the store reported before the upgrade (0007 and 0008 alike): (messages,
# recipients, delivered, failed, hours, blocks) over [T0, T0 + 11 days].
TOTALS_0007 = {ALICE: (15, 27, 24, 3, 9, 3), BOT: (18, 33, 27, 6, 10, 4)}
TOTALS_0008 = {ALICE: (16, 28, 25, 3, 10, 4), BOT: (18, 33, 28, 8, 10, 4)}


def run(url: str, *statements: tuple[Any, list[dict[str, Any]]]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for stmt, rows in statements:
                table = getattr(stmt, "table", None)
                conn.execute(stmt, rows_0008(table, rows) if isinstance(table, sa.TableClause)
                             and not isinstance(table, sa.Table) else rows)
    finally:
        engine.dispose()


def count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() or 0)
    finally:
        engine.dispose()


def folded_and_counted(url: str) -> list[tuple[Any, ...]]:
    return [
        (MESSAGES_0008.insert(), [{"time": T + i, "mta": "mx1", "queue_id": f"Q{i}",
                                   "sender": BOT, "rcpt_count": 2} for i in range(3)]),
        (RECIPIENTS_0008.insert(), [
            {"time": T + i + 5, "mta": "mx1", "queue_id": f"Q{i}", "sender": BOT,
             "recipient": f"r{j}@example.org", "status": "sent" if j else "bounced",
             "dsn": "2.0.0" if j else "5.1.1", "reply": "250 ok" if j else "550 no"}
            for i in range(3) for j in range(2)]),
        (COUNTERS_0008.insert(), [
            {"sender": s, "name": n, "bucket": T + 60 * i, "value": float(i + 1)}
            for s in (BOT, ALICE) for n in ("messages", "sent") for i in range(4)]),
        (SENDER_DAYS_0008.insert(), [
            {"sender": s, "day": T0 + d * DAY, "messages": 5, "recipients": 9, "delivered": 8,
             "failed": 1, "hours": 0b1011} for s in (BOT, ALICE) for d in range(3)]),
    ]


def totals(store: Store) -> dict[str, tuple[int, ...]]:
    return {k: (t.messages, t.recipients, t.delivered, t.failed, t.hours, t.blocks)
            for k, t in store.report_totals(float(T0), float(T0 + 11 * DAY)).items()}


def counters(store: Store) -> dict[tuple[str, str], dict[int, float]]:
    return {(s, n): store.counters(s, n) for s in (BOT, ALICE) for n in ("messages", "sent")}


def assert_schema_is_schema_py(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_from_0007_keeps_every_row(store_url: str) -> None:
    store = Store(store_url, create=False)
    try:
        assert store.upgrade("0007") == "0007"
        run(store_url, *folded_and_counted(store_url))
        assert store.upgrade("0008") == "0008"
        assert [count(store_url, t) for t in ("messages", "recipients", "counters",
                                              "sender_days")] == [3, 6, 16, 6]
        assert store.upgrade() == Store.head_revision()
        assert totals(store) == TOTALS_0007
        assert counters(store)[(BOT, "sent")] == {T + 60 * i: float(i + 1) for i in range(4)}
    finally:
        store.close()


def rows_at_0008() -> list[tuple[Any, list[dict[str, Any]]]]:
    """Three messages of BOT (a recipient deferred, then bounced; one delivered), one of
    ALICE, outcomes of a message never stored and two refusals before queueing."""
    rows = folded_and_counted("")
    rows[0][1][:] = [
        {"time": T + i, "mta": "mx1", "queue_id": f"Q{i}", "sender": BOT, "rcpt_count": 2,
         "envelope_from": "b@x.example", "helo": "bot.example", "client_addr": "192.0.2.66",
         "client_name": "unknown", "message_id": f"<{i}@x.example>", "size": 900,
         "null_sender": False, "auto_reply": False, "list_like": False, "list_id": ""}
        for i in range(3)] + [
        {"time": T + 9, "mta": "mx1", "queue_id": "Q9", "sender": ALICE, "rcpt_count": 1,
         "envelope_from": "alice@example.net", "helo": "pc", "client_addr": "192.0.2.9",
         "client_name": "pc.example.net", "message_id": "<9@example.net>", "size": 50,
         "null_sender": False, "auto_reply": True, "list_like": False, "list_id": ""}]

    def r(t: float, qid: str, sender: str, rcpt: str, status: str, dsn: str = "",
          reply: str = "", cls: str = "") -> dict[str, Any]:
        return {"time": t, "mta": "mx1", "queue_id": qid, "sender": sender, "recipient": rcpt,
                "status": status, "dsn": dsn, "reply": reply, "outcome_class": cls,
                "relay": "mx.far.example[198.51.100.7]:25" if status != "queued" else ""}
    rows[1][1][:] = [
        *(r(T + i, f"Q{i}", BOT, f"r{j}@example.org", "queued")
          for i in range(3) for j in range(2)),
        *(r(T + i + 5, f"Q{i}", BOT, "r0@example.org", "deferred", "4.4.1", "451 later",
            "temporary") for i in range(3)),
        *(r(T + i + 50, f"Q{i}", BOT, "r0@example.org", "bounced", "5.1.1", "550 no",
            "unknown_user") for i in range(3)),
        *(r(T + i + 6, f"Q{i}", BOT, "r1@example.org", "sent", "2.0.0",
            "250 2.0.0 Ok: queued as X", "delivered") for i in range(3)),
        r(T + 12, "Q9", ALICE, "bob@example.org", "sent", "2.0.0", "250 ok", "delivered"),
        r(T + 100, "QX", BOT, "x@example.org", "sent", "2.0.0", "250 ok", "delivered"),
        *(r(T + 200 + i, "", BOT, f"n{i}@example.org", "rejected", "5.7.1", "554 refused",
            "policy") for i in range(2)),
    ]
    return rows


def test_upgrade_from_0008_packs_each_message_with_its_recipients(store_url: str) -> None:
    store = Store(store_url, create=False)
    try:
        assert store.upgrade("0008") == "0008"
        run(store_url, *rows_at_0008(),
            (schema.senders.insert(), [{"key": BOT, "first_seen": T, "last_seen": T,
                                        "state_since": T, "changed_at": T, "findings": {}}]))
        assert store.upgrade() == Store.head_revision() == "0009"
        assert_schema_is_schema_py(store_url)
        assert totals(store) == TOTALS_0008
        assert counters(store)[(BOT, "sent")] == {T + 60 * i: float(i + 1) for i in range(4)}
        assert store.sender(BOT) is not None
        msgs = store.messages(BOT, float(T0))
        assert [(m.queue_id, m.helo, m.client_name, m.rcpt_count) for m in msgs] == [
            ("Q0", "bot.example", "unknown", 2), ("Q1", "bot.example", "unknown", 2),
            ("Q2", "bot.example", "unknown", 2), ("QX", "", "", 1), ("", "", "", 2)]
        # Each recipient's last outcome; the Message-ID, the relay and the delivery's
        # remote reply are not kept.
        assert msgs[0].message_id == ""
        assert list(msgs[0].recipients) == [
            StoredRecipient(T + 6, "r1@example.org", "sent", "delivered", "2.0.0", "", ""),
            StoredRecipient(T + 50, "r0@example.org", "bounced", "unknown_user", "5.1.1",
                            "550 no", "")]
        assert store.outcomes_recorded("mx1", "Q1") == {
            ("r0@example.org", "bounced", T + 51), ("r1@example.org", "sent", T + 7)}
        assert store.message("QX", "mx1") is None  # outcomes only: no submission
        assert store.undelivered_queue_ids(BOT) == []
        assert count(store_url, "names") >= 4

        b = Batch()  # an outcome for a converted message, a counter into a copied row
        b.recipient_rows.append(RecipientRow(T + 300, "mx1", "Q9", ALICE, "eve@example.org",
                                             "bounced", "unknown_user", "5.1.1", "550 no"))
        b.add_counter(BOT, "sent", T, 10.0)
        store.write_batch(b, HL)
        assert store.counters(BOT, "sent")[T] == 11.0
        after = totals(store)
        assert after[ALICE][3] == TOTALS_0008[ALICE][3] + 1
        store.prune(0.0, detail_before=float(T0 + 11 * DAY))
        assert store.messages(BOT, 0.0) == []  # folded into its day
        assert totals(store) == after
    finally:
        store.close()
