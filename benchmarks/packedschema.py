"""A proposed store layout for issue 20, measured by `storesize.py --layout packed`: each
message's recipients packed into its own row; senders, MTAs, HELOs and client names
interned; minute counters kept two hours (the messages' rows answer longer windows). A
benchmark's schema, not the product's (extrusion/scoring/schema.py is untouched); the
tables the proposal leaves alone (senders, state_changes, rate_use, ...) are the
product's own.

A recipient is one line of the message's `rcpts` text, its fields separated by tabs and
trailing empty fields left off:

    address  status  after  dsn  class  reply

`status` one letter (STATUS_CODE), `after` the outcome's time less the message's in
milliseconds (empty while queued). The writer leaves out a delivered recipient's reply
(reports list a failure's), and the relay and the Message-ID, which nothing reads.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
)

from extrusion.scoring.schema import ADDR_LEN, KEY_LEN, QUEUE_ID_LEN

STATUS_CODE = {"queued": "q", "sent": "s", "deferred": "d", "bounced": "b", "expired": "e",
               "rejected": "r"}
STATUS_OF = {v: k for k, v in STATUS_CODE.items()}
DELIVERED = frozenset("s")
FAILED = frozenset("ber")
# What a status says of itself: a delivered recipient's DSN and class are nearly always
# these, so they are left out (IMPLIED) and a delivered one without a DSN says NONE.
IMPLIED = {"s": ("2.0.0", "delivered")}
NONE = "-"
# Counter names as small integers: the same few names on every row.
COUNTER_CODE = {"messages": 1, "recipients": 2, "sent": 3, "deferred": 4, "bounced": 5,
                "expired": 6, "rejected": 7}
NULL_SENDER, AUTO_REPLY, LIST_LIKE = 1, 2, 4  # bits of `flags`


def build(dialect: str) -> MetaData:
    """The proposed tables for `dialect` ("sqlite" or "postgresql").

    The two differ in the message table's key only: SQLite's rowid is the table's own
    b-tree (an integer key costs no index), so it keeps one and a unique index on
    (mta, queue id); PostgreSQL's heap has no order, so (mta, queue id) is the primary
    key itself and a BRIN index on time (a few pages: rows arrive in time order) lets
    a prune find old rows without a key per row."""
    md = MetaData()
    names = Table(
        "names", md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(KEY_LEN), nullable=False),
    )
    Index("ix_names_name", names.c.name, unique=True)
    # Fixed widths first, widest first, then the texts: PostgreSQL aligns each fixed
    # column to its width, and a float after a text pads up to 7 bytes (8 a row here).
    columns: list[Column[Any]] = [
        Column("time", Float, nullable=False),
        Column("mta_id", Integer, nullable=False),
        Column("sender_id", Integer, nullable=False),
        Column("size", Integer, nullable=False, default=0),
        # A sender uses the same few: names' ids, like the sender's and the MTA's.
        Column("helo_id", Integer, nullable=False),
        Column("client_name_id", Integer, nullable=False),
        Column("rcpt_count", SmallInteger, nullable=False, default=0),
        Column("flags", SmallInteger, nullable=False, default=0),
        # Final outcomes among rcpts, kept with them: reports count these in SQL.
        Column("delivered", SmallInteger, nullable=False, default=0),
        Column("failed", SmallInteger, nullable=False, default=0),
        Column("queue_id", String(QUEUE_ID_LEN), nullable=False),
        Column("envelope_from", String(ADDR_LEN), nullable=False, default=""),
        Column("client_addr", String(64), nullable=False, default=""),
        Column("list_id", String(ADDR_LEN), nullable=False, default=""),
        Column("rcpts", Text, nullable=False, default=""),
    ]
    if dialect == "sqlite":
        messages = Table("messages", md, Column("id", Integer, primary_key=True), *columns)
        Index("ix_messages_queue", messages.c.mta_id, messages.c.queue_id, unique=True)
    else:
        messages = Table("messages", md, *columns,
                         PrimaryKeyConstraint("mta_id", "queue_id", name="pk_messages"))
        Index("ix_messages_time", messages.c.time, postgresql_using="brin")
    Index("ix_messages_sender_time", messages.c.sender_id, messages.c.time)
    Table(
        "counters", md,
        Column("sender_id", Integer, nullable=False),
        Column("name", SmallInteger, nullable=False),
        Column("bucket", BigInteger, nullable=False),
        Column("value", Float, nullable=False, default=0.0),
        PrimaryKeyConstraint("sender_id", "name", "bucket", name="pk_counters"),
        sqlite_with_rowid=False,
    )
    days = Table(
        "sender_days", md,
        Column("sender_id", Integer, nullable=False),
        Column("day", BigInteger, nullable=False),
        *(Column(c, Integer, nullable=False, default=0)
          for c in ("messages", "recipients", "delivered", "failed", "hours")),
        PrimaryKeyConstraint("sender_id", "day", name="pk_sender_days"),
        sqlite_with_rowid=False,
    )
    Index("ix_sender_days_day", days.c.day)
    return md


class Rcpt(NamedTuple):
    """One recipient as packed: its status letter and the outcome's offset from the
    message's time, in milliseconds (-1 while queued)."""

    address: str
    status: str = "q"
    after_ms: int = -1
    dsn: str = ""
    cls: str = ""
    reply: str = ""


def pack(rcpts: list[Rcpt]) -> str:
    lines = []
    for r in rcpts:
        after = "" if r.after_ms < 0 else str(r.after_ms)
        dsn, cls = IMPLIED.get(r.status, ("", ""))
        dsn = "" if r.dsn == dsn else r.dsn or NONE
        cls = "" if r.cls == cls else r.cls or NONE
        fields = (r.address, r.status, after, dsn, cls, r.reply)
        lines.append("\t".join(fields).rstrip("\t"))
    return "\n".join(lines)


def unpack(text: str) -> list[Rcpt]:
    out = []
    for line in text.split("\n") if text else ():
        f = line.split("\t") + [""] * 5
        status = f[1] or "q"
        dsn, cls = IMPLIED.get(status, ("", ""))
        dsn = "" if f[3] == NONE else f[3] or dsn
        cls = "" if f[4] == NONE else f[4] or cls
        out.append(Rcpt(f[0], status, int(f[2]) if f[2] else -1, dsn, cls, f[5]))
    return out


def finals(rcpts: list[Rcpt]) -> tuple[int, int]:
    """(delivered, failed) among `rcpts`."""
    return (sum(r.status in DELIVERED for r in rcpts), sum(r.status in FAILED for r in rcpts))
