"""Per-sender daily aggregates (scoring/retention.py).

`sender_days`: messages, recipients, outcomes and the hours active of one sender's
day, once its per-message rows are past `[store] detail_days`.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sender_days",
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("day", sa.BigInteger(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sender", "day", name="pk_sender_days"),
    )
    op.create_index("ix_sender_days_day", "sender_days", ["day"])


def downgrade() -> None:
    op.drop_index("ix_sender_days_day", table_name="sender_days")
    op.drop_table("sender_days")
