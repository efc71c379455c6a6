"""Client-chosen values never stop the store: bounded per column, refused rows set aside.

On both backends: over-long Message-IDs, addresses, HELOs and reasons are
stored cut with the `[+N]` marker and the messages after them all arrive; a
row the database really refuses (NOT NULL) is quarantined and the rest of its
batch written, whether it comes from a flush or from the spool.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from extrusion.checkpoint import Position
from extrusion.scoring import schema
from extrusion.scoring.bounds import (
    REPLACEMENT,
    bound_batch,
    bound_row,
    bound_text,
    column_bounder,
)
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import OperatorAction, OperatorVerb, Outcome, Status, Submission
from extrusion.scoring.quarantine import (
    FILE_NAME,
    PartlyWritten,
    Quarantine,
    write_in_parts,
)
from extrusion.scoring.rows import Batch, MessageRow, SenderDelta, SenderRow
from extrusion.scoring.spool import Spool
from extrusion.scoring.store import Store, StoreRefused, StoreUnavailable

from .helpers import Clock
from .test_engine_store import make_config

SENDER = "ip:192.0.2.10"
LONG_MSGID = "<" + "m" * 1198 + ">"  # 1,200 characters
LONG_RCPT = "r" * 390 + "@example.org"  # 402
LONG_FROM = "f" * 390 + "@example.net"
LONG_HELO = "h" * 10_000
LONG_REASON = "x" * 100 * 1024


def cut_to(value: str, limit: int) -> bool:
    """`value` is exactly `limit` long and ends in the marker for what was cut."""
    return len(value) == limit and value.endswith("]") and "[+" in value[-12:]


# --- bounding, pure ---------------------------------------------------------------------


def test_a_long_value_keeps_its_head_and_says_how_much_was_cut() -> None:
    out = bound_text("a" * 1200, 998)
    assert out == "a" * 992 + "[+208]"
    assert len(bound_text("b" * 100_000, 4096)) == 4096


def test_a_value_within_bounds_is_the_same_object() -> None:
    value = "mx.example.org"
    assert bound_text(value, schema.HOST_LEN) is value
    b = Batch(message_rows=[MessageRow(1.0, "", "Q1", SENDER, "a@x", "h", "192.0.2.1", "",
                                       1, 1, "<id@x>", False, False, False, "")])
    assert bound_batch(b) is b


@pytest.mark.parametrize("odd", [
    "h" * 10_000, "caf\u00e9.example", "a\x00b", "a\udcffb", "\u00e9" * 300, "",
], ids=["long", "non-ascii", "nul", "surrogate", "long-non-ascii", "empty"])
def test_typed_rows_are_bounded_as_dict_rows_are(odd: str) -> None:
    # Typed rows take a fast path for short ASCII text; whatever it skips must be
    # exactly what the full per-column bounding would have left alone.
    for field in ("envelope_from", "helo", "client_name", "message_id", "list_id"):
        row = MessageRow(1.0, "mta", "Q1", SENDER, "a@x", "h", "192.0.2.1", "",
                         1000, 1, "<id@x>", False, False, False, "")._replace(**{field: odd})
        out = bound_batch(Batch(message_rows=[row])).message_rows[0]
        assert out._asdict() == bound_row(schema.message_row, row._asdict())
        assert (out is row) == (bound_row(schema.message_row, row._asdict()) == row._asdict())


def test_nul_and_undecodable_characters_become_the_replacement_character() -> None:
    assert bound_text("a\x00b\udcffc", 64) == f"a{REPLACEMENT}b{REPLACEMENT}c"


@pytest.mark.parametrize("table", [*schema.metadata.sorted_tables, *schema.written.sorted_tables],
                         ids=lambda t: t.name)
def test_every_column_bound_comes_from_its_type(table: sa.Table) -> None:
    for column in table.columns:
        bound = column_bounder(column)
        t = column.type
        if isinstance(t, sa.JSON):
            assert bound is not None
            assert len(bound({"k": ["y" * 5000]})["k"][0]) == schema.JSON_TEXT_LEN
        elif isinstance(t, sa.String):
            limit = t.length or schema.TEXT_LEN
            assert bound is not None
            assert cut_to(bound("z" * (limit + 50)), limit), column
        elif isinstance(t, sa.BigInteger):
            assert bound is not None and bound(10**30) == 2**63 - 1
        elif isinstance(t, sa.SmallInteger):
            assert bound is not None and bound(-(10**30)) == -(2**15)
        elif isinstance(t, sa.Integer):
            assert bound is not None and bound(-(10**30)) == -(2**31)


# --- the engine on both backends ------------------------------------------------------


@pytest.fixture
def engine(store_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = Clock()
    e = open_engine(make_config(store_url, tmp_path, "mx1"), clock)
    yield e, clock
    e.close()


def submit(engine: Engine, clock: Clock, qid: str, **kw: object) -> None:
    clock.t += 1.0
    args: dict[str, object] = {"envelope_from": "a@example.net", "recipients": ("b@example.org",)}
    args.update(kw)
    engine.submission(Submission(clock.t, SENDER, qid, mta="mx1", **args))  # type: ignore[arg-type]


def assert_next_30_arrive(engine: Engine, clock: Clock) -> None:
    for i in range(30):
        submit(engine, clock, f"NEXT{i:02d}", message_id=f"<{i}@example.net>")
    engine.flush()
    assert engine.store_ok, engine.last_store_error
    assert len(engine.spool) == 0
    missing = [i for i in range(30) if engine.store.message(f"NEXT{i:02d}", "mx1") is None]
    assert missing == []


def test_over_long_client_values_are_stored_cut_and_the_next_messages_arrive(
    engine: tuple[Engine, Clock],
) -> None:
    e, clock = engine
    submit(e, clock, "LONG1", envelope_from=LONG_FROM, recipients=(LONG_RCPT,),
           message_id=LONG_MSGID, helos=(LONG_HELO,), client_name="n\x00ame.example")
    clock.t += 1.0
    e.outcome(Outcome(clock.t, "LONG1", LONG_RCPT, Status.BOUNCED, "5.1.1",
                      "550 " + LONG_REASON, mta="mx1", relay="r" * 300))
    e.operator(OperatorAction(clock.t, SENDER, OperatorVerb.HOLD, "w" * 300, LONG_REASON))
    e.flush()
    assert e.store_ok, e.last_store_error

    msg = e.store.message("LONG1", "mx1")
    assert msg is not None
    assert msg.message_id == ""  # not kept since 0009 (no reader)
    assert cut_to(msg.envelope_from, schema.ADDR_LEN)
    assert cut_to(msg.helo, schema.HOST_LEN)
    assert msg.client_name == f"n{REPLACEMENT}ame.example"
    rows = e.store.messages(SENDER)[0].recipients
    assert {r.status for r in rows} == {"bounced"}  # the outcome replaced "queued"
    assert all(cut_to(r.recipient, schema.ADDR_LEN) for r in rows)
    bounced = next(r for r in rows if r.status == "bounced")
    assert cut_to(bounced.reply, schema.TEXT_LEN)
    assert bounced.relay == ""  # not kept since 0009 (no reader)
    change = e.store.state_changes(SENDER)[-1]
    assert cut_to(change.reason, schema.TEXT_LEN)
    assert cut_to(change.who, 128)
    override = e.store.overrides()[0]
    assert cut_to(override.reason, schema.TEXT_LEN) and cut_to(override.who, 128)
    assert not (Path(e.spool.dir) / FILE_NAME).exists()  # nothing needed setting aside

    assert_next_30_arrive(e, clock)


def test_store_writers_outside_the_engine_are_bounded_too(store_url: str) -> None:
    with Store(store_url) as store:
        store.set_checkpoint("c" * 300, Position(1, 2, 2))
        raw = sa.create_engine(store_url)  # the row as stored, not as the store reads it
        try:
            with raw.connect() as conn:
                [(name,)] = conn.execute(sa.select(schema.checkpoints.c.name)).all()
        finally:
            raw.dispose()
        assert cut_to(name, 255)
        store.put_sender(SenderRow(key=SENDER, pinned_by="p" * 200,
                                   findings={"helo": {"examples": ["h" * 5000]}}))
        row = store.sender(SENDER)
        assert row is not None and cut_to(row.pinned_by or "", 128)
        assert cut_to(row.findings["helo"]["examples"][0], schema.JSON_TEXT_LEN)


def refused_batch(n: int, t0: float = 0.0) -> Batch:
    """`n` good outcome rows and, in the middle, one with no recipient: a NOT NULL
    column both databases refuse (IntegrityError), whatever the bounds."""
    b = Batch()
    for i in range(n):
        b.recipients.append({"time": t0 + i, "mta": "mx1", "queue_id": f"Q{i}",
                             "sender": SENDER, "recipient": f"r{i}@example.org",
                             "status": "bounced"})
    b.recipients.insert(n // 2, {"time": t0, "mta": "mx1", "queue_id": "BAD",
                                 "sender": SENDER, "recipient": None, "status": "bounced"})
    b.add_counter(SENDER, "failures", int(t0 // 60) * 60)
    b.add_sender(SenderDelta(SENDER, time=t0 + 1.0, score_delta=2.0), 3600.0)
    return b


def stored_recipients(store: Store) -> int:
    return sum(len(m.recipients) for m in store.messages(SENDER))


def test_a_refused_row_is_quarantined_and_the_rest_of_its_batch_written(
    store_url: str, tmp_path: Path,
) -> None:
    quarantine = Quarantine(tmp_path / "spool")
    with Store(store_url) as store:
        with pytest.raises(StoreRefused):
            store.write_batch(refused_batch(20), 3600.0)  # as one transaction: refused
        rows = write_in_parts(lambda b: store.write_batch(b, 3600.0), refused_batch(20),
                              quarantine)
        assert [r.key for r in rows] == [SENDER]
        assert stored_recipients(store) == 20
        assert store.counters(SENDER, "failures") == {0: 1.0}
    assert quarantine.rows == 1
    [line] = (tmp_path / "spool" / FILE_NAME).read_text().splitlines()
    kept = json.loads(line)
    assert kept["batch"]["recipients"][0]["queue_id"] == "BAD"
    assert "refused" in kept["reason"]


def test_a_spooled_batch_with_a_refused_row_no_longer_blocks_the_spool(
    engine: tuple[Engine, Clock],
) -> None:
    e, clock = engine
    e.spool.write(refused_batch(10))  # spooled during an outage, say; refused on replay
    e.spool.write(refused_batch(0))  # and one behind it
    e.flush()
    assert e.store_ok, e.last_store_error
    assert len(e.spool) == 0
    assert e.quarantine.rows == 2
    assert e.status()["quarantined_rows"] == 2
    assert stored_recipients(e.store) == 10
    assert_next_30_arrive(e, clock)


def test_an_outage_while_writing_in_parts_leaves_only_the_unwritten_rest(
    store_url: str, tmp_path: Path,
) -> None:
    """The store going away between two parts cannot be timed for real: the write
    function stops answering after the first half is written (the refusal is real)."""
    quarantine = Quarantine(tmp_path / "spool")
    spool = Spool(tmp_path / "spool")
    spool.write(refused_batch(8))
    with Store(store_url) as store:
        whole = len(refused_batch(8))

        def write(b: Batch) -> list[SenderRow]:
            if len(b) < whole and any(r["queue_id"] == "Q4" for r in b.recipients):
                raise StoreUnavailable("store unavailable: connection refused")
            return store.write_batch(b, 3600.0)

        with pytest.raises(PartlyWritten):
            spool.replay(lambda b: write_in_parts(write, b, quarantine))
        assert stored_recipients(store) == 4  # Q0..Q3, the first half; BAD set aside
        assert quarantine.rows == 1
        [remainder] = [Batch.from_json(p.read_text()) for p in spool.files()]
        assert [r["queue_id"] for r in remainder.recipients] == ["Q4", "Q5", "Q6", "Q7"]
        assert list(remainder.senders) == [SENDER] and len(remainder.counters) == 1

        assert spool.replay(lambda b: write_in_parts(
            lambda part: store.write_batch(part, 3600.0), b, quarantine)) == 1
        assert stored_recipients(store) == 8  # nothing twice, nothing lost but BAD
        assert quarantine.rows == 1 and len(spool) == 0
