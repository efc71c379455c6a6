"""The engine's typed rows: written like dict rows, spooled in the dict form."""

from __future__ import annotations

from pathlib import Path

from extrusion.scoring import schema
from extrusion.scoring.rows import (
    MESSAGE_COLUMNS,
    RECIPIENT_COLUMNS,
    Batch,
    MessageRow,
    RecipientRow,
)
from extrusion.scoring.spool import Spool
from extrusion.scoring.store import Store

HL = 3600.0
SENDER = "ip:192.0.2.7"
MESSAGE = {
    "time": 100.0, "mta": "mx1", "queue_id": "4F1A2B", "sender": SENDER,
    "envelope_from": "alice@example.net", "helo": "pc.example.net", "client_addr": "192.0.2.7",
    "client_name": "pc.example.net", "size": 2206, "rcpt_count": 2, "message_id": "m@x",
    "null_sender": False, "auto_reply": True, "list_like": False, "list_id": "",
}
RECIPIENTS = [
    {"time": 100.0, "mta": "mx1", "queue_id": "4F1A2B", "sender": SENDER,
     "recipient": "a@x.example", "status": "queued", "outcome_class": "", "dsn": "",
     "reply": "", "relay": ""},
    {"time": 101.0, "mta": "mx1", "queue_id": "4F1A2B", "sender": SENDER,
     "recipient": "a@x.example", "status": "bounced", "outcome_class": "unknown_user",
     "dsn": "5.1.1", "reply": "550 5.1.1 no such user", "relay": "mx.x.example[192.0.2.9]:25"},
]


def as_dicts() -> Batch:
    b = Batch()
    b.messages.append(dict(MESSAGE))
    b.recipients.extend(dict(r) for r in RECIPIENTS)
    return b


def as_tuples() -> Batch:
    b = Batch()
    b.message_rows.append(MessageRow(**MESSAGE))
    b.recipient_rows.extend(RecipientRow(**r) for r in RECIPIENTS)
    return b


def test_the_typed_rows_are_the_tables_columns() -> None:
    assert MessageRow._fields == MESSAGE_COLUMNS and RecipientRow._fields == RECIPIENT_COLUMNS
    # The rows as the engine hands them over (bounds.py bounds them by these), not the
    # packed table they are written into.
    for columns, table in ((MESSAGE_COLUMNS, schema.message_row),
                           (RECIPIENT_COLUMNS, schema.recipient_row)):
        assert columns == tuple(c.name for c in table.columns)
    assert set(MESSAGE_COLUMNS) == set(MESSAGE) and set(RECIPIENT_COLUMNS) == set(RECIPIENTS[0])


def test_tuple_rows_and_dict_rows_store_the_same(tmp_path: Path) -> None:
    stored = []
    for name, batch in (("dicts", as_dicts()), ("tuples", as_tuples())):
        assert len(batch) == 3
        with Store(f"sqlite:///{tmp_path / name}.db") as store:
            store.write_batch(batch, HL)
            stored.append(store.messages(SENDER))
    assert stored[0] == stored[1]
    (msg,) = stored[1]
    assert msg.auto_reply and msg.message_id == ""  # not kept since 0009 (no reader)
    # The outcome in the same batch takes the "queued" row's place, in both forms.
    assert [(r.status, r.outcome_class) for r in msg.recipients] == [
        ("bounced", "unknown_user")]


def test_tuple_rows_are_spooled_as_dict_rows(tmp_path: Path) -> None:
    assert as_tuples().to_json() == as_dicts().to_json()
    spool = Spool(tmp_path / "spool")
    spool.write(as_tuples())
    seen: list[Batch] = []
    spool.replay(seen.append)
    assert seen == [as_dicts()]
    assert seen[0].all_messages() == as_tuples().all_messages() == [MESSAGE]
    assert seen[0].all_recipients() == as_tuples().all_recipients() == RECIPIENTS


def test_dict_rows_are_written_before_tuple_rows(tmp_path: Path) -> None:
    b = as_tuples()
    b.recipients.append({"time": 100.0, "queue_id": "4F1A2B", "sender": SENDER,
                         "recipient": "first@x.example", "mta": "mx1", "status": "queued"})
    with Store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        store.write_batch(b, HL)
        (msg,) = store.messages(SENDER)
    assert [r.recipient for r in msg.recipients] == ["first@x.example", "a@x.example"]
