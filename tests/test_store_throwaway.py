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
        # An outcome without its message: a row of its own, under its queue id.
        assert conn.execute("SELECT queue_id FROM messages").fetchall() == [("Q1",)]
    finally:
        conn.close()


def test_throwaway_store_rolls_back_a_batch_that_fails_half_way(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'replay.db'}", durable=False) as store:
        b = Batch()
        b.messages.append({"time": 1.0, "queue_id": "Q1", "sender": "ip:192.0.2.1"})
        b.recipients.append({"time": 1.0, "mta": "", "queue_id": "Q1",
                             "sender": "ip:192.0.2.1", "recipient": "a@example.org",
                             "status": "queued"})
        # Refused by the database after the messages went in (no sender).
        b.state_changes.append({"time": 1.0, "sender": None, "old_state": "ok",
                                "new_state": "hold", "score": 0.0})
        with pytest.raises(StoreError, match="state_changes"):
            store.write_batch(b, HL)
        assert store.messages("ip:192.0.2.1") == []


def indexes(path: Path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return set(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                                " AND sql IS NOT NULL"))
    finally:
        conn.close()


def test_deferred_indexes_are_built_again_after_the_load(tmp_path: Path) -> None:
    Store(f"sqlite:///{tmp_path / 'plain.db'}").close()
    want = indexes(tmp_path / "plain.db")
    path = tmp_path / "replay.db"
    with Store(f"sqlite:///{path}", durable=False) as store:
        with store.deferred_indexes():
            during = {name for name, _sql in indexes(path)}
            b = Batch()
            b.messages.append({"time": 1.0, "mta": "mx1", "queue_id": "Q1",
                               "sender": "ip:192.0.2.1"})
            b.recipients.append(recipient("Q1"))
            b.add_counter("ip:192.0.2.1", "messages", 0)
            store.write_batch(b, HL)
            # The engine's own lookups still have their index.
            assert store.sender_for_queue_id("Q1", "mx1") == "ip:192.0.2.1"
        assert indexes(path) == want
        (msg,) = store.messages("ip:192.0.2.1")
        assert [r.recipient for r in msg.recipients] == ["a@example.org"]
    # (Messages are found by their primary key, (mta, queue id): not a named index.)
    assert "ix_names_name" in during
    assert not during & {"ix_messages_sender_time", "ix_messages_time"}


def test_deferred_indexes_come_back_when_the_load_fails(tmp_path: Path) -> None:
    Store(f"sqlite:///{tmp_path / 'plain.db'}").close()
    path = tmp_path / "replay.db"
    with (Store(f"sqlite:///{path}", durable=False) as store, pytest.raises(RuntimeError),
          store.deferred_indexes()):
        raise RuntimeError("the log reader died")
    assert indexes(path) == indexes(tmp_path / "plain.db")


def test_indexes_of_a_store_nobody_reads_again_are_not_built(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    with Store(f"sqlite:///{path}", durable=False) as store:
        with store.deferred_indexes(build=False):
            pass
        assert store.senders() == []
    names = {name for name, _sql in indexes(path)}
    assert "ix_names_name" in names and "ix_messages_sender_time" not in names
