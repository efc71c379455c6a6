"""Initial schema: senders, messages, recipients, counters, audit trail, overrides, checkpoints.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "senders",
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("class", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("score_time", sa.Float, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("state_since", sa.Float, nullable=False),
        sa.Column("pinned", sa.String(16), nullable=True),
        sa.Column("pinned_by", sa.String(128), nullable=True),
        sa.Column("pinned_reason", sa.Text, nullable=True),
        sa.Column("findings", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("changed_at", sa.Float, nullable=False),
    )
    op.create_index("ix_senders_changed_at", "senders", ["changed_at"])
    op.create_index("ix_senders_state", "senders", ["state"])

    op.create_table(
        "messages",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("mta", sa.String(255), nullable=False),
        sa.Column("queue_id", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("envelope_from", sa.String(320), nullable=False),
        sa.Column("helo", sa.String(255), nullable=False),
        sa.Column("client_addr", sa.String(64), nullable=False),
        sa.Column("client_name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("rcpt_count", sa.Integer, nullable=False),
        sa.Column("message_id", sa.String(998), nullable=False),
        sa.Column("null_sender", sa.Boolean, nullable=False),
        sa.Column("auto_reply", sa.Boolean, nullable=False),
        sa.Column("list_like", sa.Boolean, nullable=False),
        sa.Column("list_id", sa.String(320), nullable=False),
    )
    op.create_index("ix_messages_queue", "messages", ["mta", "queue_id"])
    op.create_index("ix_messages_sender_time", "messages", ["sender", "time"])

    op.create_table(
        "recipients",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("mta", sa.String(255), nullable=False),
        sa.Column("queue_id", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome_class", sa.String(32), nullable=False),
        sa.Column("dsn", sa.String(16), nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("relay", sa.String(255), nullable=False),
    )
    op.create_index("ix_recipients_queue", "recipients", ["mta", "queue_id"])
    op.create_index("ix_recipients_sender_time", "recipients", ["sender", "time"])

    op.create_table(
        "counters",
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("sender", "name", "bucket", name="pk_counters"),
    )
    op.create_index("ix_counters_bucket", "counters", ["bucket"])

    op.create_table(
        "state_changes",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("old_state", sa.String(16), nullable=False),
        sa.Column("new_state", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("who", sa.String(128), nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
    )
    op.create_index("ix_state_changes_sender_time", "state_changes", ["sender", "time"])
    op.create_index("ix_state_changes_time", "state_changes", ["time"])

    op.create_table(
        "overrides",
        sa.Column("match", sa.String(320), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("limits", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("who", sa.String(128), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )

    op.create_table(
        "checkpoints",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("inode", sa.BigInteger, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "checkpoints", "overrides", "state_changes", "counters", "recipients", "messages",
        "senders",
    ):
        op.drop_table(table)
