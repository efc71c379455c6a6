"""The store contract: the same tests against SQLite and PostgreSQL (`store_url` fixture)."""

from __future__ import annotations

import multiprocessing
import socket
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from extrusion.checkpoint import Position
from extrusion.scoring import dialects, schema
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.rows import (
    PIN_CLEAR,
    PIN_SET,
    Batch,
    OverrideRow,
    SenderDelta,
    SenderRow,
    decay,
)
from extrusion.scoring.store import Store, StoreError, StoreUnavailable

HL = 3600.0
ALICE = "sasl:alice@example.net"
BOB = "ip:192.0.2.7"


@pytest.fixture
def store(store_url: str):  # type: ignore[no-untyped-def]
    s = Store(store_url)
    yield s
    s.close()


def submission_batch(sender: str, queue_id: str, rcpts: list[str], t: float = 100.0) -> Batch:
    b = Batch()
    b.messages.append({
        "time": t, "mta": "mx1", "queue_id": queue_id, "sender": sender,
        "envelope_from": "alice@example.net", "helo": "pc.example.net",
        "client_addr": "192.0.2.7", "size": 2206, "rcpt_count": len(rcpts),
    })
    for r in rcpts:
        b.recipients.append({"time": t, "mta": "mx1", "queue_id": queue_id, "sender": sender,
                             "recipient": r, "status": "queued"})
    return b


# --- create and upgrade -----------------------------------------------------------------


def test_first_use_creates_the_schema_at_head(store: Store) -> None:
    assert store.revision() == Store.head_revision()
    assert store.senders() == []


def test_sqlite_file_and_parent_directory_are_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "x.db"
    with Store(f"sqlite:///{path}", busy_timeout_ms=1234):
        assert path.is_file()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_upgrade_is_idempotent_and_explicit_upgrade_creates(store_url: str) -> None:
    s = Store(store_url, create=False)
    try:
        assert s.revision() is None
        assert s.upgrade() == Store.head_revision()
        assert s.upgrade() == Store.head_revision()
    finally:
        s.close()


def test_migration_produces_exactly_the_schema_module(store: Store) -> None:
    engine = sa.create_engine(store.url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()
    assert diffs == []


def test_unsupported_url_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="unsupported store url"):
        Store("mysql://root@127.0.0.1/test")


def test_unreachable_postgres_is_store_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(StoreUnavailable, match="store unavailable"):
            Store(f"postgresql+psycopg://postgres@127.0.0.1:{port}/nothing")


def test_sqlite_in_unwritable_place_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises((StoreUnavailable, OSError)):
        Store(f"sqlite:///{tmp_path / 'file' / 'x.db'}")


# --- messages, recipients, outcomes --------------------------------------------------------


def test_messages_and_recipients_round_trip(store: Store) -> None:
    store.write_batch(submission_batch(ALICE, "4F1A2B", ["a@x.example", "b@y.example"]), HL)
    outcome = Batch()
    outcome.recipients.append({
        "time": 160.0, "mta": "mx1", "queue_id": "4F1A2B", "sender": ALICE,
        "recipient": "a@x.example", "status": "bounced", "outcome_class": "unknown_user",
        "dsn": "5.1.1", "reply": "550 5.1.1 <a@x.example>: User unknown", "relay": "x.example",
    })
    store.write_batch(outcome, HL)

    m = store.message("4F1A2B", "mx1")
    assert m is not None and m.sender == ALICE and m.rcpt_count == 2 and m.size == 2206
    assert store.sender_for_queue_id("4F1A2B", "mx1") == ALICE
    assert store.sender_for_queue_id("4F1A2B", "other-mta") is None
    assert store.message("NOPE", "mx1") is None

    (msg,) = store.messages(ALICE, since=0.0, until=1000.0)
    assert msg.helo == "pc.example.net"
    statuses = sorted((r.recipient, r.status) for r in msg.recipients)
    # The outcome took the place of a@x.example's "queued" row; b@y.example still waits.
    assert statuses == [("a@x.example", "bounced"), ("b@y.example", "queued")]
    bounced = next(r for r in msg.recipients if r.status == "bounced")
    assert bounced.dsn == "5.1.1" and "User unknown" in bounced.reply
    assert store.messages(ALICE, since=500.0) == []
    assert store.messages(BOB) == []


def test_a_message_reported_twice_is_counted_once(store: Store) -> None:
    # The milter's report and the log feed's, from two processes, in either order;
    # the second may know a recipient more (and carries one the first had).
    store.write_batch(submission_batch(ALICE, "TWICE", ["a@x", "b@x"], t=100.0), HL)
    store.write_batch(submission_batch(ALICE, "TWICE", ["b@x", "c@x", "a@x"], t=101.0), HL)
    (msg,) = store.messages(ALICE)
    assert msg.rcpt_count == 3
    assert sorted(r.recipient for r in msg.recipients if r.status == "queued") == [
        "a@x", "b@x", "c@x"]
    assert store.counters(ALICE, "messages") == {60: 1.0}
    assert store.counters(ALICE, "recipients") == {60: 3.0}
    # Within one batch (a spooled batch merged with a later one) the same holds.
    both = submission_batch(BOB, "SAME", ["d@x"])
    both.messages += submission_batch(BOB, "SAME", ["d@x"]).messages
    store.write_batch(both, HL)
    assert len(store.messages(BOB)) == 1
    assert store.counters(BOB, "messages") == {60: 1.0}


def test_a_reused_queue_id_is_another_message(store: Store) -> None:
    week = 7 * 86400.0
    store.write_batch(submission_batch(ALICE, "REUSED", ["a@x"], t=100.0), HL)
    store.write_batch(submission_batch(ALICE, "REUSED", ["b@x", "c@x"], t=100.0 + week), HL)
    (msg,) = store.messages(ALICE)  # the old row is replaced by the new message
    assert msg.time == 100.0 + week and msg.rcpt_count == 2
    assert store.counters(ALICE, "messages") == {60: 1.0, int(week) + 60: 1.0}
    assert store.counters(ALICE, "recipients") == {60: 1.0, int(week) + 60: 2.0}


def test_undelivered_queue_ids_lists_messages_with_open_recipients(store: Store) -> None:
    store.write_batch(submission_batch(BOB, "Q1", ["a@x", "b@x"]), HL)
    store.write_batch(submission_batch(BOB, "Q2", ["c@x"], t=101.0), HL)
    store.write_batch(submission_batch(ALICE, "Q3", ["d@x"], t=102.0), HL)
    done = Batch()
    for rcpt, qid, status in [("a@x", "Q1", "sent"), ("b@x", "Q1", "deferred"),
                              ("c@x", "Q2", "bounced")]:
        done.recipients.append({"time": 200.0, "mta": "mx1", "queue_id": qid, "sender": BOB,
                                "recipient": rcpt, "status": status})
    store.write_batch(done, HL)
    assert store.undelivered_queue_ids(BOB) == ["Q1"]
    assert store.undelivered_queue_ids(BOB, "mx1") == ["Q1"]
    assert store.undelivered_queue_ids(BOB, "mx2") == []
    assert store.undelivered_queue_ids(ALICE) == ["Q3"]


def test_outcomes_without_a_recorded_submission_still_reach_the_report(store: Store) -> None:
    b = Batch()
    b.recipients.append({"time": 50.0, "mta": "mx1", "queue_id": "ORPHAN", "sender": BOB,
                         "recipient": "z@x", "status": "bounced", "dsn": "5.1.1"})
    store.write_batch(b, HL)
    (msg,) = store.messages(BOB)
    assert msg.queue_id == "ORPHAN" and msg.rcpt_count == 1
    assert msg.recipients[0].status == "bounced"


# --- counters ------------------------------------------------------------------------------


def test_counters_add_up_per_bucket(store: Store) -> None:
    for _ in range(3):
        b = Batch()
        b.add_counter(ALICE, "failed", 600, 2.0)
        b.add_counter(ALICE, "failed", 660)
        b.add_counter(BOB, "failed", 600)
        store.write_batch(b, HL)
    assert store.counters(ALICE, "failed") == {600: 6.0, 660: 3.0}
    assert store.counters(ALICE, "failed", since=630.0) == {660: 3.0}
    assert store.counters(BOB, "failed") == {600: 3.0}
    assert store.counters(BOB, "sent") == {}


# --- senders ---------------------------------------------------------------------------------


def test_sender_scores_from_two_writers_add_up_with_decay(store: Store) -> None:
    b1 = Batch()
    b1.add_sender(SenderDelta(ALICE, time=1000.0, score_delta=8.0, cls="consumer"), HL)
    (row,) = store.write_batch(b1, HL)
    assert row.score == 8.0 and row.cls == "consumer" and row.state == "ok" and row.version == 1
    b2 = Batch()
    b2.add_sender(SenderDelta(ALICE, time=1000.0 + HL, score_delta=2.0), HL)
    (row,) = store.write_batch(b2, HL)
    assert row.score == pytest.approx(4.0 + 2.0)
    assert row.version == 2 and row.cls == "consumer" and row.first_seen == 1000.0
    stored = store.sender(ALICE)
    assert stored is not None and stored.score == pytest.approx(6.0)
    assert stored.score_at(1000.0 + 2 * HL, HL) == pytest.approx(3.0)
    assert store.sender(BOB) is None


def test_sender_state_findings_and_listing_by_state(store: Store) -> None:
    b = Batch()
    b.add_sender(SenderDelta(ALICE, time=10.0, score_delta=25.0, state="throttled",
                             state_since=10.0, findings={"failed_recipients": {"count": 25}}), HL)
    b.add_sender(SenderDelta(BOB, time=10.0, score_delta=1.0), HL)
    store.write_batch(b, HL)
    (throttled,) = store.senders("throttled")
    assert throttled.key == ALICE and throttled.findings == {"failed_recipients": {"count": 25}}
    assert [r.key for r in store.senders()] == [ALICE, BOB]
    assert [r.key for r in store.senders(min_score=5.0)] == [ALICE]
    assert store.senders("blocked") == []


def test_reset_score_forgets_the_evidence(store: Store) -> None:
    b = Batch()
    b.add_sender(SenderDelta(BOB, time=10.0, score_delta=50.0, state="held"), HL)
    store.write_batch(b, HL)
    b = Batch()
    b.add_sender(SenderDelta(BOB, time=20.0, reset_score=True, state="ok"), HL)
    (row,) = store.write_batch(b, HL)
    assert row.score == 0.0 and row.state == "ok" and row.state_since == 20.0


def test_pins_are_mirrored_into_overrides(store: Store) -> None:
    b = Batch()
    b.add_sender(SenderDelta(BOB, time=10.0, pin=PIN_SET, pinned="block", pinned_by="ops",
                             pinned_reason="ticket 12"), HL)
    (row,) = store.write_batch(b, HL)
    assert (row.pinned, row.pinned_by, row.pinned_reason) == ("block", "ops", "ticket 12")
    (ov,) = store.overrides()
    assert (ov.match, ov.action, ov.who, ov.reason) == (BOB, "block", "ops", "ticket 12")
    b = Batch()
    b.add_sender(SenderDelta(BOB, time=11.0, pin=PIN_CLEAR), HL)
    (row,) = store.write_batch(b, HL)
    assert row.pinned is None and store.overrides() == []


def test_overrides_set_replace_delete(store: Store) -> None:
    store.set_override(OverrideRow("customer:acme", "allow", "", "newsletter", "ops", 5.0))
    store.set_override(OverrideRow("customer:acme", "limits", "business", "bigger", "ops2", 6.0))
    assert store.overrides() == [
        OverrideRow("customer:acme", "limits", "business", "bigger", "ops2", 6.0)
    ]
    assert store.delete_override("customer:acme") is True
    assert store.delete_override("customer:acme") is False
    assert store.overrides() == []


def test_put_sender_and_changed_senders(store: Store) -> None:
    rows, mark = store.changed_senders(None)
    assert rows == []
    put = store.put_sender(SenderRow(key=ALICE, state="held", score=41.0, score_time=5.0,
                                     first_seen=1.0, last_seen=5.0, state_since=5.0))
    assert put.version == 1
    rows, mark2 = store.changed_senders(mark)
    assert [(r.key, r.state, r.version) for r in rows] == [(ALICE, "held", 1)]
    again = store.put_sender(SenderRow(key=ALICE, state="ok", first_seen=1.0))
    assert again.version == 2
    rows, _ = store.changed_senders(mark2)
    assert [(r.key, r.state) for r in rows] == [(ALICE, "ok")]


def test_changed_versions_name_the_rows_senders_keyed_reads(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh's two reads: (key, version) of the changed rows, then whole rows by key
    (over several IN lists here), the same rows changed_senders gives."""
    versions, mark = store.changed_versions(None)
    assert versions == []
    store.put_sender(SenderRow(key=ALICE, state="held", score=41.0, score_time=5.0,
                               first_seen=1.0, last_seen=5.0, state_since=5.0))
    store.put_sender(SenderRow(key=BOB, first_seen=2.0))
    store.put_sender(SenderRow(key=BOB, first_seen=2.0))
    versions, mark2 = store.changed_versions(mark)
    assert sorted(versions) == [(BOB, 2), (ALICE, 1)]
    monkeypatch.setattr(dialects, "CHUNK", 1)
    keyed = store.senders_keyed([BOB, "ip:192.0.2.99", ALICE])
    whole, _ = store.changed_senders(mark)
    assert sorted(keyed, key=lambda r: r.key) == sorted(whole, key=lambda r: r.key)
    assert store.senders_keyed([]) == []
    store.put_sender(SenderRow(key=ALICE, state="ok", first_seen=1.0))
    versions, _ = store.changed_versions(mark2)
    assert dict(versions)[ALICE] == 2  # (BOB too, if within the refresh's overlap)


# --- audit trail -------------------------------------------------------------------------------


def test_state_changes_keep_evidence_and_who(store: Store) -> None:
    change = StateChange(time=30.0, sender=BOB, old=State.OK, new=State.THROTTLED, score=21.0,
                         reason="too many delivery failures",
                         evidence={"failed": 21, "examples": ["a@x", "b@y"]})
    from extrusion.scoring.store import state_change_row

    b = Batch()
    b.state_changes.append(state_change_row(change))
    store.write_batch(b, HL)
    store.add_state_change(StateChange(time=40.0, sender=BOB, old=State.THROTTLED,
                                       new=State.OK, score=0.0, reason="released",
                                       who="ops"))
    store.add_state_change(StateChange(time=41.0, sender=ALICE, old=State.OK,
                                       new=State.BLOCKED, score=0.0, reason="x", who="ops"))
    trail = store.state_changes(BOB)
    assert trail[0] == change
    assert (trail[1].new, trail[1].who) == (State.OK, "ops")
    assert [c.sender for c in store.state_changes(since=35.0)] == [BOB, ALICE]
    assert [c.time for c in store.state_changes(until=35.0)] == [30.0]
    assert len(store.state_changes(limit=1)) == 1


# --- checkpoints -------------------------------------------------------------------------------


def test_checkpoints(store: Store) -> None:
    assert store.get_checkpoint("maillog:/var/log/mail.log") is None
    store.set_checkpoint("maillog:/var/log/mail.log", Position(1234567, 2**40, 2**40 + 9, 2049))
    assert store.get_checkpoint("maillog:/var/log/mail.log") == (1234567, 2**40, 2**40 + 9, 2049)
    store.set_checkpoint("maillog:/var/log/mail.log", Position(99, 0, 0))
    assert store.get_checkpoint("maillog:/var/log/mail.log") == (99, 0, 0, 0)
    with pytest.raises(ValueError, match="must not be negative"):
        store.set_checkpoint("x", Position(-1, 0, 0))
    with pytest.raises(ValueError, match="before offset"):
        store.set_checkpoint("x", Position(1, 10, 5))


def test_prune_removes_only_old_rows(store: Store) -> None:
    store.write_batch(submission_batch(ALICE, "OLD", ["a@x"], t=100.0), HL)
    store.write_batch(submission_batch(ALICE, "NEW", ["a@x"], t=10_000.0), HL)
    b = Batch()
    b.add_counter(ALICE, "failed", 60)
    b.add_counter(ALICE, "failed", 9960)
    store.write_batch(b, HL)
    # The old message (its recipient packed in its row), its "messages" and "recipients"
    # counters, "failed" at 60.
    assert store.prune(5000.0) == 4
    assert [m.queue_id for m in store.messages(ALICE)] == ["NEW"]
    assert store.counters(ALICE, "failed") == {9960: 1.0}
    assert store.counters(ALICE, "messages") == {9960: 1.0}


# --- concurrency -------------------------------------------------------------------------------

WRITERS = 2
BATCHES = 40
ROWS = 25


def _writer(url: str, n: int) -> str:
    """Child process: many small batches, each touching the same shared sender."""
    try:
        s = Store(url, busy_timeout_ms=10_000)
        try:
            for i in range(BATCHES):
                b = submission_batch(f"ip:10.0.0.{n}", f"W{n}-{i}",
                                     [f"r{j}@x" for j in range(ROWS)], t=float(i))
                b.add_counter("ip:10.0.0.99", "failed", 0)
                b.add_sender(SenderDelta("ip:10.0.0.99", time=0.0, score_delta=1.0), HL)
                b.add_sender(SenderDelta(f"ip:10.0.0.{n}", time=float(i), score_delta=0.0), HL)
                s.write_batch(b, HL)
                s.set_checkpoint(f"w{n}", Position(n, i, i))
        finally:
            s.close()
    except Exception as exc:  # report any failure to the parent
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_two_processes_write_one_store_concurrently(store_url: str) -> None:
    Store(store_url).close()  # created before the race, like `extrusion db upgrade`
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        results = pool.starmap(_writer, [(store_url, n) for n in range(WRITERS)])
    assert results == ["ok"] * WRITERS
    with Store(store_url) as s:
        shared = s.sender("ip:10.0.0.99")
        assert shared is not None and shared.score == pytest.approx(WRITERS * BATCHES)
        assert s.counters("ip:10.0.0.99", "failed") == {0: float(WRITERS * BATCHES)}
        for n in range(WRITERS):
            msgs = s.messages(f"ip:10.0.0.{n}")
            assert len(msgs) == BATCHES
            assert all(len(m.recipients) == ROWS for m in msgs)
            assert s.get_checkpoint(f"w{n}") == (n, BATCHES - 1, BATCHES - 1, 0)


def _reporter(url: str, n: int) -> str:
    """Child process: reports the same messages as the other reporter, as fast as it can."""
    try:
        with Store(url, busy_timeout_ms=10_000) as s:
            for i in range(BATCHES):
                s.write_batch(submission_batch(ALICE, f"S{i}", [f"r{j}@x" for j in range(ROWS)],
                                               t=float(i)), HL)
    except Exception as exc:  # report any failure to the parent
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_two_processes_reporting_the_same_messages_at_once_count_each_once(
    store_url: str,
) -> None:
    Store(store_url).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        results = pool.starmap(_reporter, [(store_url, n) for n in range(WRITERS)])
    assert results == ["ok"] * WRITERS
    with Store(store_url) as s:
        assert sum(s.counters(ALICE, "messages").values()) == BATCHES
        assert sum(s.counters(ALICE, "recipients").values()) == BATCHES * ROWS
        msgs = s.messages(ALICE)
        assert len(msgs) == BATCHES
        assert all(len(m.recipients) == ROWS for m in msgs)


def test_two_processes_create_a_new_sqlite_store_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'race.db'}"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        results = pool.starmap(_writer, [(url, n) for n in range(WRITERS)])
    assert results == ["ok"] * WRITERS


# --- the spool's serialisation -----------------------------------------------------------------


def test_batch_survives_json_round_trip() -> None:
    b = submission_batch(ALICE, "Q", ["a@x"])
    b.add_counter(ALICE, "failed", 60, 2.5)
    b.add_sender(SenderDelta(ALICE, time=5.0, score_delta=1.5, state="watch", pin=PIN_SET,
                             pinned="monitor", findings={"k": [1, 2]}), HL)
    again = Batch.from_json(b.to_json())
    assert again == b and len(again) == len(b) == 4


def test_deltas_for_one_sender_fold_into_one() -> None:
    b = Batch()
    b.add_sender(SenderDelta(ALICE, time=0.0, score_delta=4.0, cls="consumer"), HL)
    b.add_sender(SenderDelta(ALICE, time=HL, score_delta=1.0, state="watch"), HL)
    (d,) = b.senders.values()
    assert d.score_delta == pytest.approx(3.0) and d.cls == "consumer" and d.state == "watch"
    b.add_sender(SenderDelta(ALICE, time=HL, reset_score=True, score_delta=0.5), HL)
    assert d.score_delta == 0.5 and d.reset_score


def test_decay_never_negative_and_ignores_backwards_time() -> None:
    assert decay(10.0, HL, HL) == pytest.approx(5.0)
    assert decay(10.0, -50.0, HL) == 10.0
    assert decay(-1.0, 10.0, HL) == 0.0


def test_a_row_without_a_required_column_is_a_clear_error_and_writes_nothing(
    store: Store,
) -> None:
    b = submission_batch(ALICE, "Q1", ["a@x"])
    del b.messages[0]["queue_id"]
    with pytest.raises(StoreError, match="messages row without 'queue_id'"):
        store.write_batch(b, HL)
    assert store.messages(ALICE) == []  # the transaction was rolled back: nothing half-written


def test_a_new_sqlite_file_locked_by_another_process_still_ends_in_wal(tmp_path: Path) -> None:
    # Another process holds the fresh file exclusively for a moment (as a second
    # extrusion process creating the same store would): opening waits, then
    # switches the file to WAL so the milter and the policy daemon can share it.
    import sqlite3
    import threading

    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE squatter (x)")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        with Store(f"sqlite:///{path}", busy_timeout_ms=10_000) as s:
            assert s.revision() == Store.head_revision()
    finally:
        release.join()
        holder.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        check.close()
