"""Per-sender baselines (scoring/baseline.py), kept across restarts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sender_baselines",
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("baseline", sa.JSON, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_index("ix_sender_baselines_updated", "sender_baselines", ["updated"])


def downgrade() -> None:
    op.drop_index("ix_sender_baselines_updated", table_name="sender_baselines")
    op.drop_table("sender_baselines")
