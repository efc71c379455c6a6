"""Several hosts on one store: shared rate budgets and one notification per event.

`rate_use`: what each host let a restricted sender (watched, throttled, on
probation) send, per minute, so that every host can count the others' share
against the sender's budget (scoring/shared.py). `notify_claims`: which host
sends the digest line for a (sender, state) event (notify/claims.py).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_use",
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("mta", sa.String(255), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sender", "mta", "bucket", name="pk_rate_use"),
    )
    op.create_index("ix_rate_use_bucket", "rate_use", ["bucket"])
    op.create_table(
        "notify_claims",
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("mta", sa.String(255), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sender", "state", name="pk_notify_claims"),
    )


def downgrade() -> None:
    op.drop_table("notify_claims")
    op.drop_index("ix_rate_use_bucket", table_name="rate_use")
    op.drop_table("rate_use")
