"""A smaller store (issue 20): indexes the reads do not use dropped or narrowed, and
SQLite's tables keyed by several columns stored once, not twice.

- `ix_counters_bucket` dropped: every read of `counters` is by sender and name (its
  key); only the hourly prune looks by bucket, and it walks the key.
- `ix_recipients_queue` on `queue_id` alone: a queue id names one message per MTA
  at a time, so the MTA is checked on the row; the index loses its longest column.
- On SQLite, `counters` and `sender_days` become WITHOUT ROWID tables: a table with a
  rowid keeps every row twice, in the table and again in its primary key's index.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _counters(name: str, with_rowid: bool) -> None:
    op.create_table(
        name,
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sender", "name", "bucket", name="pk_counters"),
        sqlite_with_rowid=with_rowid,
    )


def _sender_days(name: str, with_rowid: bool) -> None:
    op.create_table(
        name,
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("day", sa.BigInteger(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sender", "day", name="pk_sender_days"),
        sqlite_with_rowid=with_rowid,
    )


def _rebuild(table: str, create: str, columns: str, with_rowid: bool) -> None:
    """SQLite cannot change a table's rowid in place: a copy under a new name."""
    new = f"{table}_0008"
    {"counters": _counters, "sender_days": _sender_days}[create](new, with_rowid)
    op.execute(f"INSERT INTO {new} ({columns}) SELECT {columns} FROM {table}")
    op.drop_table(table)
    op.rename_table(new, table)


_COUNTERS = "sender, name, bucket, value"
_DAYS = "sender, day, messages, recipients, delivered, failed, hours"


def upgrade() -> None:
    op.drop_index("ix_counters_bucket", table_name="counters")
    op.drop_index("ix_recipients_queue", table_name="recipients")
    op.create_index("ix_recipients_queue", "recipients", ["queue_id"])
    if op.get_bind().dialect.name == "sqlite":
        _rebuild("counters", "counters", _COUNTERS, with_rowid=False)
        op.drop_index("ix_sender_days_day", table_name="sender_days")
        _rebuild("sender_days", "sender_days", _DAYS, with_rowid=False)
        op.create_index("ix_sender_days_day", "sender_days", ["day"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_sender_days_day", table_name="sender_days")
        _rebuild("sender_days", "sender_days", _DAYS, with_rowid=True)
        op.create_index("ix_sender_days_day", "sender_days", ["day"])
        _rebuild("counters", "counters", _COUNTERS, with_rowid=True)
    op.drop_index("ix_recipients_queue", table_name="recipients")
    op.create_index("ix_recipients_queue", "recipients", ["mta", "queue_id"])
    op.create_index("ix_counters_bucket", "counters", ["bucket"])
