"""The hand-written SQL of the engine's flushes, in qmark style (`dialects.py` turns it
into each driver's own). Plain SQL because it runs for tens of thousands of rows
per flush straight through the driver's executemany, where SQLAlchemy's per-row
parameter processing would cost more than the database does."""

from __future__ import annotations

from dataclasses import fields

from extrusion.scoring import schema
from extrusion.scoring.rows import SenderRow


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


def marks(n: int) -> str:
    return ", ".join("?" * n)


# `messages` columns in schema order: a packed row is a tuple of them (packedwrite.py).
PACKED_COLUMNS: tuple[str, ...] = tuple(c.name for c in schema.messages.columns)
_KEY = ("mta_id", "queue_id")
MESSAGE_INSERT = (
    f"INSERT INTO messages ({', '.join(_q(c) for c in PACKED_COLUMNS)}) "
    f"VALUES ({marks(len(PACKED_COLUMNS))})"
)
# PostgreSQL: the INSERT that creates a row decides which writer's report came first.
MESSAGE_NEW = (MESSAGE_INSERT
               + " ON CONFLICT (mta_id, queue_id) DO NOTHING RETURNING mta_id, queue_id")
# Every column but the key, then the key: one UPDATE per message per flush.
UPDATED_COLUMNS = tuple(c for c in PACKED_COLUMNS if c not in _KEY)
MESSAGE_UPDATE = "UPDATE messages SET {} WHERE mta_id = ? AND queue_id = ?".format(
    ", ".join(f"{_q(c)} = ?" for c in UPDATED_COLUMNS))
STORED_MESSAGES = f"SELECT {', '.join(_q(c) for c in PACKED_COLUMNS)} FROM messages"
COUNTERS_UPSERT = (
    "INSERT INTO counters (sender_id, name, bucket, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (sender_id, name, bucket) DO UPDATE SET value = counters.value + excluded.value"
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
