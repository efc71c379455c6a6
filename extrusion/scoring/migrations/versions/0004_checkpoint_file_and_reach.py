"""Checkpoints name the file by device as well as inode, and say how far lines were read.

`offset` is where a restarted follower resumes: the start of the oldest line
whose evidence was still only in memory. `reached` is the end of the last line
handed over; lines between the two are read again and what they recorded
already is not recorded twice (see extrusion/maillog/recovery.py). Rows written
before this revision had read exactly to `offset`.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("device", sa.BigInteger, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("reached", sa.BigInteger, nullable=False,
                                   server_default="0"))
    op.execute('UPDATE checkpoints SET reached = "offset"')


def downgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("reached")
        batch.drop_column("device")
