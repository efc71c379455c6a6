"""The packed store's rows read past the store's API (tests that check what is stored):
`messages` with its names resolved and its flags and recipients unpacked, and the
tables of earlier revisions for migration tests to fill."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from extrusion.scoring.packedwrite import ORPHAN_PREFIX
from extrusion.scoring.packing import AUTO_REPLY, LIST_LIKE, NULL_SENDER, ORPHAN, recipients

NAMED = {"mta_id": "mta", "sender_id": "sender", "helo_id": "helo",
         "client_name_id": "client_name"}


def message_rows(url: str, where: str = "") -> list[dict[str, Any]]:
    """Every `messages` row (time order) as a dict: names as text, flags as booleans,
    `recipients` the unpacked lines, a made-up queue id (NOQUEUE) empty."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = dict(conn.exec_driver_sql("SELECT id, name FROM names").all())
            rows = [dict(r) for r in conn.exec_driver_sql(
                f"SELECT * FROM messages {where} ORDER BY time, queue_id").mappings()]
    finally:
        engine.dispose()
    for r in rows:
        for col, name in NAMED.items():
            r[name] = names.get(r[col], "")
        for bit, name in ((NULL_SENDER, "null_sender"), (AUTO_REPLY, "auto_reply"),
                          (LIST_LIKE, "list_like"), (ORPHAN, "orphan")):
            r[name] = bool(r["flags"] & bit)
        r["recipients"] = recipients(r["rcpts"], r["time"])
        if r["queue_id"].startswith(ORPHAN_PREFIX):  # a refusal before queueing
            r["queue_id"] = ""  # as the store reads it back (its key is made up)
    return rows


def outcome_rows(url: str) -> list[tuple[str, str, str, str, float]]:
    """(mta, queue id, recipient, status, time) of every recipient line."""
    return sorted((r["mta"], r["queue_id"], x.recipient, x.status, round(x.time, 3))
                  for r in message_rows(url) for x in r["recipients"])


def old_table(name: str, *columns: str) -> sa.TableClause:
    """A table of an earlier revision, for an INSERT of its rows."""
    return sa.table(name, *(sa.column(c) for c in columns))


MESSAGES_0008 = old_table(
    "messages", "time", "mta", "queue_id", "sender", "envelope_from", "helo", "client_addr",
    "client_name", "size", "rcpt_count", "message_id", "null_sender", "auto_reply",
    "list_like", "list_id")
RECIPIENTS_0008 = old_table(
    "recipients", "time", "mta", "queue_id", "sender", "recipient", "status",
    "outcome_class", "dsn", "reply", "relay")
COUNTERS_0008 = old_table("counters", "sender", "name", "bucket", "value")
SENDER_DAYS_0008 = old_table("sender_days", "sender", "day", "messages", "recipients",
                             "delivered", "failed", "hours")

# The columns an earlier revision's rows took from schema.py's Python-side defaults.
DEFAULTS_0008 = {
    "messages": {"envelope_from": "", "helo": "", "client_addr": "", "client_name": "",
                 "size": 0, "rcpt_count": 0, "message_id": "", "null_sender": False,
                 "auto_reply": False, "list_like": False, "list_id": ""},
    "recipients": {"outcome_class": "", "dsn": "", "reply": "", "relay": ""},
}


def rows_0008(table: sa.TableClause, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` for an INSERT into an earlier revision's `table`, defaults filled in."""
    defaults = DEFAULTS_0008.get(table.name, {})
    return [{**defaults, **r} for r in rows]
