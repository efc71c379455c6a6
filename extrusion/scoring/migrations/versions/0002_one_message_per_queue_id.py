"""One messages row per (mta, queue_id): the milter's and the log feed's reports merge.

Rows already stored twice are merged first (the richer value of each column:
a HELO, a client name, header flags; the most recipients) into the oldest
row, and the others deleted; then the index becomes unique.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TEXT = ("sender", "envelope_from", "helo", "client_addr", "client_name", "message_id",
         "list_id")
_MAX = ("size", "rcpt_count")
_FLAGS = ("null_sender", "auto_reply", "list_like")


def upgrade() -> None:
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    same = "m2.mta = messages.mta AND m2.queue_id = messages.queue_id"
    sets = [f"time = (SELECT min(m2.time) FROM messages m2 WHERE {same})"]
    # max() of strings: a non-empty value beats the empty default.
    sets += [f"{c} = (SELECT max(m2.{c}) FROM messages m2 WHERE {same})" for c in _TEXT + _MAX]
    agg = "bool_or(m2.{0})" if pg else "max(m2.{0})"
    sets += [f"{c} = (SELECT {agg.format(c)} FROM messages m2 WHERE {same})" for c in _FLAGS]
    dup = ("(mta, queue_id) IN (SELECT mta, queue_id FROM messages "
           "GROUP BY mta, queue_id HAVING count(*) > 1)")
    conn.execute(sa.text(f"UPDATE messages SET {', '.join(sets)} WHERE {dup}"))
    conn.execute(sa.text(
        "DELETE FROM messages WHERE id NOT IN "
        "(SELECT min(id) FROM messages GROUP BY mta, queue_id)"
    ))
    op.drop_index("ix_messages_queue", table_name="messages")
    op.create_index("ix_messages_queue", "messages", ["mta", "queue_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_messages_queue", table_name="messages")
    op.create_index("ix_messages_queue", "messages", ["mta", "queue_id"])
