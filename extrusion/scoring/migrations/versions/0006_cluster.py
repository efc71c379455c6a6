"""The failure window shared by the hosts of one store (scoring/failwindow.py).

`failure_windows`: each host's snapshot of a sender's failure window (distinct
failed and attempted recipients), one row per sender and host.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "failure_windows",
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("mta", sa.String(255), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("attempted", sa.Integer(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sender", "mta", name="pk_failure_windows"),
    )
    op.create_index("ix_failure_windows_time", "failure_windows", ["time"])


def downgrade() -> None:
    op.drop_index("ix_failure_windows_time", table_name="failure_windows")
    op.drop_table("failure_windows")
