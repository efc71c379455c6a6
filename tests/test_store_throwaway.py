"""A non-durable store (a replay's throw-away file): no WAL, still rolls back a failed batch."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from extrusion.scoring.rows import Batch
from extrusion.scoring.store import Store, StoreError

HL = 3600.0


def recipient(qid: str) -> dict[str, object]:
    return {"time": 1.0, "mta": "mx1", "queue_id": qid, "sender": "ip:192.0.2.1",
            "recipient": "a@example.org", "status": "sent"}


def test_throwaway_store_keeps_no_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    with Store(f"sqlite:///{path}", durable=False) as store:
        b = Batch()
        b.recipients.append(recipient("Q1"))
        store.write_batch(b, HL)
        assert not (tmp_path / "replay.db-wal").exists()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
        assert conn.execute("SELECT queue_id FROM recipients").fetchall() == [("Q1",)]
    finally:
        conn.close()


def test_throwaway_store_rolls_back_a_batch_that_fails_half_way(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'replay.db'}", durable=False) as store:
        b = Batch()
        b.messages.append({"time": 1.0, "queue_id": "Q1", "sender": "ip:192.0.2.1"})
        b.recipients.append({"time": 1.0, "recipient": "a@example.org"})  # no queue id
        with pytest.raises(StoreError, match="queue_id"):
            store.write_batch(b, HL)  # after the messages went in
        assert store.messages("ip:192.0.2.1") == []
