"""The hand-written SQL of the engine's flushes, in qmark style (`dialects.py` turns it
into each driver's own). Plain SQL because it runs for tens of thousands of rows
per flush straight through the driver's executemany, where SQLAlchemy's per-row
parameter processing would cost more than the database does."""

from __future__ import annotations

from dataclasses import fields

from extrusion.scoring import schema
from extrusion.scoring.queueids import QUEUE_ID_REUSE_SECONDS
from extrusion.scoring.rows import MESSAGE_COLUMNS, RECIPIENT_COLUMNS, SenderRow


def _q(name: str) -> str:
    return f'"{name}"'


# The senders column of each SenderRow field (they differ only where a field
# cannot be named like a Python keyword).
SENDER_COLUMN_OF = {f.name: "class" if f.name == "cls" else f.name for f in fields(SenderRow)}
# senders columns in SenderRow's field order, by construction: rows become SenderRows
# directly (a flush of a busy server merges thousands of senders).
SENDER_COLUMNS = tuple(schema.senders.c[col] for col in SENDER_COLUMN_OF.values())
# SenderRow fields in SENDER_UPDATE's parameter order: every column but the key, then the key.
SENDER_UPDATE_FIELDS = (*(f for f in SENDER_COLUMN_OF if f != "key"), "key")


def _message_merge() -> str:
    """ON CONFLICT clause that makes a second report of a message (the milter's and the
    log feed's, from two processes) one row: each column keeps the richer value — a
    HELO, a client name, header flags only the milter sees; the most recipients; the
    earliest time. A row older than a queue id can live is replaced instead
    (queueids.py)."""
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


def marks(n: int) -> str:
    return ", ".join("?" * n)


_MESSAGE_INSERT = (
    f"INSERT INTO messages ({', '.join(_q(c) for c in MESSAGE_COLUMNS)}) "
    f"VALUES ({marks(len(MESSAGE_COLUMNS))})"
)
MESSAGE_NEW = _MESSAGE_INSERT + " ON CONFLICT (mta, queue_id) DO NOTHING RETURNING mta, queue_id"
MESSAGE_ROWS = _MESSAGE_INSERT + _message_merge()
RECIPIENT_ROWS = (
    f"INSERT INTO recipients ({', '.join(_q(c) for c in RECIPIENT_COLUMNS)}) "
    f"VALUES ({marks(len(RECIPIENT_COLUMNS))})"
)
COUNTERS_UPSERT = (
    "INSERT INTO counters (sender, name, bucket, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (sender, name, bucket) DO UPDATE SET value = counters.value + excluded.value"
)
QUEUED_ANSWERED = (
    "DELETE FROM recipients WHERE mta = ? AND queue_id = ? AND recipient = ? "
    "AND status = 'queued'"
)
RATE_USE_UPSERT = (
    "INSERT INTO rate_use (sender, mta, bucket, recipients, messages) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (sender, mta, bucket) DO UPDATE SET "
    "recipients = rate_use.recipients + excluded.recipients, "
    "messages = rate_use.messages + excluded.messages"
)
SENDER_PLACEHOLDER = (
    'INSERT INTO senders (key, "class", state, score, score_time, first_seen, last_seen, '
    "state_since, findings, version, changed_at) "
    "VALUES (?, 'default', 'ok', 0.0, 0.0, ?, ?, ?, '{}', 0, ?) "
    "ON CONFLICT (key) DO NOTHING"
)
# `/*json*/` marks the parameter PostgreSQL must be told is JSON (dialects.py).
SENDER_UPDATE = "UPDATE senders SET {} WHERE key = ?".format(
    ", ".join(
        f"{_q(SENDER_COLUMN_OF[f])} = ? /*json*/" if f == "findings"
        else f"{_q(SENDER_COLUMN_OF[f])} = ?"
        for f in SENDER_UPDATE_FIELDS if f != "key"
    )
)
STORED_MESSAGES = "SELECT queue_id, time, rcpt_count FROM messages"
STORED_RECIPIENTS = "SELECT DISTINCT queue_id, recipient FROM recipients"
