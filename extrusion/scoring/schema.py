"""The store's tables, as SQLAlchemy Core metadata.

This is the shape the Alembic migrations produce (a test compares the two);
the store's queries are written against these objects. Times are float
POSIX seconds, as everywhere in extrusion. A message's outcomes are packed
into its own row, found by (mta, queue_id), so that outcomes can be recorded
even when the submission was never seen (a log replay, a message from before
start-up): such outcomes make a row of their own.

`written` describes the rows the engine hands the store (rows.MessageRow,
RecipientRow) before they are packed: bounds.py takes their lengths from it.
It is no table of the database.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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

# Row ids: BIGINT on PostgreSQL, but SQLite only auto-increments "INTEGER PRIMARY KEY".
RowId = BigInteger().with_variant(Integer(), "sqlite")

KEY_LEN = 320  # sasl:USER@DOMAIN can be as long as an address
ADDR_LEN = 320
QUEUE_ID_LEN = 64
HOST_LEN = 255
STATE_LEN = 16
# Unbounded types get a bound of their own before a write (see bounds.py): a
# TEXT column (a reason, a remote server's reply) keeps this many characters,
# and every string inside a JSON column (findings, evidence) this many.
TEXT_LEN = 4096
JSON_TEXT_LEN = 1024

metadata = MetaData()

senders = Table(
    "senders",
    metadata,
    Column("key", String(KEY_LEN), primary_key=True),
    Column("class", String(64), nullable=False, default="default"),
    Column("state", String(STATE_LEN), nullable=False, default="ok"),
    # The score as of score_time; readers decay it to their own "now".
    Column("score", Float, nullable=False, default=0.0),
    Column("score_time", Float, nullable=False, default=0.0),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("state_since", Float, nullable=False),
    # An operator's pin (allow/block/hold/monitor), mirrored from `overrides`.
    Column("pinned", String(STATE_LEN), nullable=True),
    Column("pinned_by", String(128), nullable=True),
    Column("pinned_reason", Text, nullable=True),
    # Summary of the current findings (kind -> evidence) for reports.
    Column("findings", JSON, nullable=False, default=dict),
    # Bumped on every write; with changed_at it lets other processes pull changes.
    Column("version", Integer, nullable=False, default=1),
    Column("changed_at", Float, nullable=False),
)
Index("ix_senders_changed_at", senders.c.changed_at)
Index("ix_senders_state", senders.c.state)

# Sender keys, MTA host names, HELO and client names, each stored once (names.py).
names = Table(
    "names",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(KEY_LEN), nullable=False),
    # The last day (days since the epoch, of the rows' time) a write used the name: the
    # prune deletes names not seen since before the retention boundary (names.py).
    Column("seen", Integer, nullable=False, default=0),
)
Index("ix_names_name", names.c.name, unique=True)

# One row per message, its recipients packed in `rcpts` (packing.py: each one's last
# outcome), so that a report or a fold reads one row per message (issue 20). Fixed widths
# first, widest first: PostgreSQL aligns each to its width, and a float after a text
# pads. Not kept: the Message-ID, relays and a delivery's remote reply (no reader).
# A row made by outcomes whose submission was never seen has the ORPHAN flag.
messages = Table(
    "messages",
    metadata,
    Column("time", Float, nullable=False),
    Column("mta_id", Integer, nullable=False),
    Column("sender_id", Integer, nullable=False),
    Column("size", Integer, nullable=False, default=0),
    Column("helo_id", Integer, nullable=False),
    Column("client_name_id", Integer, nullable=False),
    Column("rcpt_count", SmallInteger, nullable=False, default=0),
    Column("flags", SmallInteger, nullable=False, default=0),
    # The final outcomes among the recipients: reports and folds count these in SQL.
    Column("delivered", SmallInteger, nullable=False, default=0),
    Column("failed", SmallInteger, nullable=False, default=0),
    Column("queue_id", String(QUEUE_ID_LEN), nullable=False),
    Column("envelope_from", String(ADDR_LEN), nullable=False, default=""),
    Column("client_addr", String(64), nullable=False, default=""),
    Column("list_id", String(ADDR_LEN), nullable=False, default=""),
    Column("rcpts", Text, nullable=False, default=""),
    # One row per message: the milter and the log feed both report it, and the store
    # merges the two (packedwrite.py). On SQLite the table keeps its rowid (its own
    # b-tree) and this key is an index beside it.
    PrimaryKeyConstraint("mta_id", "queue_id", name="pk_messages"),
)
Index("ix_messages_sender_time", messages.c.sender_id, messages.c.time)
# The fold's walk by time: BRIN on PostgreSQL (a few pages; rows arrive in time order).
Index("ix_messages_time", messages.c.time, postgresql_using="brin")

# Per-sender counters in minute buckets (bucket = start second), kept two hours while
# the messages in detail cover the longest window read (retention.counter_boundary);
# longer windows are read from `messages` (reads.counters). Sender id 0 is no sender:
# its row's bucket is the first one still kept (COUNTERS_HORIZON).
# Read by their key only (the prune walks it too): no other index. On SQLite, tables
# keyed by several columns are WITHOUT ROWID, or every row would be stored twice.
counters = Table(
    "counters",
    metadata,
    Column("sender_id", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("value", Float, nullable=False, default=0.0),
    PrimaryKeyConstraint("sender_id", "name", "bucket", name="pk_counters"),
    sqlite_with_rowid=False,
)
COUNTERS_HORIZON = (0, "")  # (sender_id, name) of the horizon's row

state_changes = Table(
    "state_changes",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("sender", String(KEY_LEN), nullable=False),
    Column("old_state", String(STATE_LEN), nullable=False),
    Column("new_state", String(STATE_LEN), nullable=False),
    Column("score", Float, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("who", String(128), nullable=False, default="engine"),
    Column("evidence", JSON, nullable=False, default=dict),
)
Index("ix_state_changes_sender_time", state_changes.c.sender, state_changes.c.time)
Index("ix_state_changes_time", state_changes.c.time)

# Operators' standing decisions about one sender key (the CLI's allow/block/hold/monitor).
overrides = Table(
    "overrides",
    metadata,
    Column("match", String(KEY_LEN), primary_key=True),
    Column("action", String(16), nullable=False),
    Column("limits", String(64), nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Column("who", String(128), nullable=False, default=""),
    Column("created", Float, nullable=False),
)

# Where each log follower stopped, by host and path (never shared between hosts):
# file identity (device, inode), where to resume (`offset`, the oldest line whose
# evidence was only in memory) and how far lines were read (`reached`).
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("inode", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("updated", Float, nullable=False),
    Column("device", BigInteger, nullable=False, server_default="0"),
    Column("reached", BigInteger, nullable=False, server_default="0"),
)

# Each sender's own baseline (scoring/baseline.py: usual HELOs and envelope domains,
# authenticated or not, its typical hour), so that "departs from its own history"
# survives a restart. One small JSON object per sender, bounded by Baseline itself;
# `updated` lets a start load the most recent ones and a prune drop the idle ones.
sender_baselines = Table(
    "sender_baselines",
    metadata,
    Column("key", String(KEY_LEN), primary_key=True),
    Column("baseline", JSON, nullable=False),
    Column("updated", Float, nullable=False),
)
Index("ix_sender_baselines_updated", sender_baselines.c.updated)

# What each host let a restricted sender send, per minute (scoring/shared.py): every
# host counts the other hosts' rows against the sender's budget.
rate_use = Table(
    "rate_use",
    metadata,
    Column("sender", String(KEY_LEN), nullable=False),
    Column("mta", String(HOST_LEN), nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("recipients", Integer, nullable=False),
    Column("messages", Integer, nullable=False),
    PrimaryKeyConstraint("sender", "mta", "bucket", name="pk_rate_use"),
)
Index("ix_rate_use_bucket", rate_use.c.bucket)

# Each host's snapshot of a sender's failure window (scoring/failwindow.py): every host
# adds the others' counts to its own, so the failure trigger holds for the cluster.
failure_windows = Table(
    "failure_windows",
    metadata,
    Column("sender", String(KEY_LEN), nullable=False),
    Column("mta", String(HOST_LEN), nullable=False),
    Column("failed", Integer, nullable=False),
    Column("attempted", Integer, nullable=False),
    Column("time", Float, nullable=False),
    PrimaryKeyConstraint("sender", "mta", name="pk_failure_windows"),
)
Index("ix_failure_windows_time", failure_windows.c.time)

# The host that sends the notification for a sender entering a state (notify/claims.py).
notify_claims = Table(
    "notify_claims",
    metadata,
    Column("sender", String(KEY_LEN), nullable=False),
    Column("state", String(STATE_LEN), nullable=False),
    Column("mta", String(HOST_LEN), nullable=False),
    Column("claimed_at", Float, nullable=False),
    PrimaryKeyConstraint("sender", "state", name="pk_notify_claims"),
)

# Each sender's day once its messages and outcomes are past `[store] detail_days`
# (scoring/retention.py folds them in): `day` is the day's first second (UTC),
# `hours` a bitmask of the hours (0-23) it sent in, so that hours and four-hour
# blocks active stay exact when several folds add into one row.
sender_days = Table(
    "sender_days",
    metadata,
    Column("sender_id", Integer, nullable=False),
    Column("day", BigInteger, nullable=False),
    Column("messages", Integer, nullable=False, default=0),
    Column("recipients", Integer, nullable=False, default=0),
    Column("delivered", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("hours", Integer, nullable=False, default=0),
    PrimaryKeyConstraint("sender_id", "day", name="pk_sender_days"),
    sqlite_with_rowid=False,
)
Index("ix_sender_days_day", sender_days.c.day)


written = MetaData()
message_row = Table(
    "message_row",
    written,
    Column("time", Float),
    Column("mta", String(HOST_LEN)),
    Column("queue_id", String(QUEUE_ID_LEN)),
    Column("sender", String(KEY_LEN)),
    Column("envelope_from", String(ADDR_LEN)),
    Column("helo", String(HOST_LEN)),
    Column("client_addr", String(64)),
    Column("client_name", String(HOST_LEN)),
    Column("size", Integer),
    Column("rcpt_count", SmallInteger),
    Column("message_id", String(998)),
    Column("null_sender", Boolean),
    Column("auto_reply", Boolean),
    Column("list_like", Boolean),
    Column("list_id", String(ADDR_LEN)),
)
recipient_row = Table(
    "recipient_row",
    written,
    Column("time", Float),
    Column("mta", String(HOST_LEN)),
    Column("queue_id", String(QUEUE_ID_LEN)),
    Column("sender", String(KEY_LEN)),
    Column("recipient", String(ADDR_LEN)),
    Column("status", String(16)),
    Column("outcome_class", String(32)),
    Column("dsn", String(16)),
    Column("reply", Text),
    Column("relay", String(HOST_LEN)),
)
