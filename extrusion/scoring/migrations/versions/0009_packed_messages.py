"""The packed store (issue 20): a message's recipients in its own row, names interned.

- `names`: every sender key, MTA, HELO and client name once; `messages`, `counters`
  and `sender_days` refer to them by id.
- `messages` holds one row per message with its recipients packed in `rcpts` (each
  recipient's last outcome; scoring/packing.py) and their final outcomes counted in
  `delivered` and `failed`. Outcomes whose message was never stored become rows of
  their own (the ORPHAN flag). `recipients` is dropped.
- Not carried over (no reader): the Message-ID, relays, a delivery's remote reply,
  and every outcome of a recipient but its last.

Rows are converted in batches in Python (the packing is packing.py's), then the old
tables dropped and the indexes built once, over the filled tables.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from extrusion.scoring.packing import ORPHAN, Lines, flags

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 5000
_PACKED = (
    "time",
    "mta_id",
    "sender_id",
    "size",
    "helo_id",
    "client_name_id",
    "rcpt_count",
    "flags",
    "delivered",
    "failed",
    "queue_id",
    "envelope_from",
    "client_addr",
    "list_id",
    "rcpts",
)


def _tables() -> None:
    op.create_table(
        "names",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(320), nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False),
    )
    op.create_index("ix_names_name", "names", ["name"], unique=True)
    op.create_table(
        "messages_0009",
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("mta_id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("helo_id", sa.Integer(), nullable=False),
        sa.Column("client_name_id", sa.Integer(), nullable=False),
        sa.Column("rcpt_count", sa.SmallInteger(), nullable=False),
        sa.Column("flags", sa.SmallInteger(), nullable=False),
        sa.Column("delivered", sa.SmallInteger(), nullable=False),
        sa.Column("failed", sa.SmallInteger(), nullable=False),
        sa.Column("queue_id", sa.String(64), nullable=False),
        sa.Column("envelope_from", sa.String(320), nullable=False),
        sa.Column("client_addr", sa.String(64), nullable=False),
        sa.Column("list_id", sa.String(320), nullable=False),
        sa.Column("rcpts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("mta_id", "queue_id", name="pk_messages"),
    )
    op.create_table(
        "counters_0009",
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sender_id", "name", "bucket", name="pk_counters_0009"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "sender_days_0009",
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.BigInteger(), nullable=False),
        *(
            sa.Column(c, sa.Integer(), nullable=False)
            for c in ("messages", "recipients", "delivered", "failed", "hours")
        ),
        sa.PrimaryKeyConstraint("sender_id", "day", name="pk_sender_days_0009"),
        sqlite_with_rowid=False,
    )


def _names(conn: sa.Connection) -> dict[str, int]:
    found: set[str] = {"", "unknown"}
    for sql in (
        "SELECT DISTINCT sender FROM messages",
        "SELECT DISTINCT mta FROM messages",
        "SELECT DISTINCT helo FROM messages",
        "SELECT DISTINCT client_name FROM messages",
        "SELECT DISTINCT sender FROM recipients",
        "SELECT DISTINCT mta FROM recipients",
        "SELECT DISTINCT sender FROM counters",
        "SELECT DISTINCT sender FROM sender_days",
    ):
        found.update(r[0] for r in conn.exec_driver_sql(sql))
    ordered = sorted(found)
    today = int(time.time() // 86400)  # seen today: kept a retention period from now
    for i in range(0, len(ordered), BATCH):
        conn.execute(
            sa.text("INSERT INTO names (name, seen) VALUES (:n, :d)"),
            [{"n": n, "d": today} for n in ordered[i : i + BATCH]],
        )
    return {n: int(i) for i, n in conn.exec_driver_sql("SELECT id, name FROM names")}


def _walk(conn: sa.Connection, sql: str) -> Iterator[list[Any]]:
    """Rows of `sql` (ordered by `id`, with a `:after` bound) in keyset batches."""
    after = -1
    while True:
        rows = list(conn.execute(sa.text(sql + " LIMIT :n"), {"after": after, "n": BATCH}))
        if not rows:
            return
        yield rows
        after = rows[-1][0]


_RCPT = (
    "SELECT id, mta, queue_id, time, sender, recipient, status, outcome_class, dsn, "
    "reply FROM recipients"
)


def _apply(lines: Lines, r: Any) -> None:
    if r[6] == "queued":
        lines.queued(r[5])
    else:
        lines.outcome(r[5], r[6], float(r[3]), r[8], r[7], r[9])


def _insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        cols = ", ".join(_PACKED)
        conn.execute(
            sa.text(
                f"INSERT INTO messages_0009 ({cols}) VALUES ({', '.join(':' + c for c in _PACKED)})"
            ),
            rows,
        )


def _row(
    ids: dict[str, int], key: tuple[int, str], time: float, lines: Lines, **cols: Any
) -> dict[str, Any]:
    text, delivered, failed = lines.pack(time)
    row = {
        "time": time,
        "mta_id": key[0],
        "queue_id": key[1],
        "sender_id": ids[""],
        "size": 0,
        "helo_id": ids[""],
        "client_name_id": ids[""],
        "rcpt_count": 0,
        "flags": ORPHAN,
        "envelope_from": "",
        "client_addr": "",
        "list_id": "",
    }
    row.update(cols)
    row.update(rcpts=text, delivered=min(delivered, 32767), failed=min(failed, 32767))
    return row


def _messages(conn: sa.Connection, ids: dict[str, int]) -> None:
    sql = (
        "SELECT id, time, mta, queue_id, sender, envelope_from, helo, client_addr, "
        "client_name, size, rcpt_count, null_sender, auto_reply, list_like, list_id "
        "FROM messages WHERE id > :after ORDER BY id"
    )
    for batch in _walk(conn, sql):
        lines: dict[tuple[str, str], Lines] = {(m[2], m[3]): Lines() for m in batch}
        qids = sorted({m[3] for m in batch})
        for i in range(0, len(qids), 500):
            chunk = qids[i : i + 500]
            marks = ", ".join(f":q{j}" for j in range(len(chunk)))
            for r in conn.execute(
                sa.text(f"{_RCPT} WHERE queue_id IN ({marks}) ORDER BY time, id"),
                {f"q{j}": q for j, q in enumerate(chunk)},
            ):
                if (target := lines.get((r[1], r[2]))) is not None:
                    _apply(target, r)
        _insert(
            conn,
            [
                _row(
                    ids,
                    (ids[m[2]], m[3]),
                    float(m[1]),
                    lines[(m[2], m[3])],
                    sender_id=ids[m[4]],
                    size=min(int(m[9]), 2**31 - 1),
                    helo_id=ids[m[6]],
                    client_name_id=ids[m[8]],
                    rcpt_count=min(int(m[10]), 32767),
                    flags=flags(m[11], m[12], m[13]),
                    envelope_from=m[5],
                    client_addr=m[7],
                    list_id=m[14],
                )
                for m in batch
            ],
        )


def _orphans(conn: sa.Connection, ids: dict[str, int]) -> None:
    """Outcomes whose message was never stored: a row per (mta, queue id), and one per
    refusal before queueing (no queue id), under a made-up key as the store makes."""
    sql = (
        f"{_RCPT} r WHERE id > :after AND NOT EXISTS (SELECT 1 FROM messages m "
        f"WHERE m.mta = r.mta AND m.queue_id = r.queue_id) ORDER BY id"
    )
    groups: dict[tuple[str, str], list[Any]] = {}
    for batch in _walk(conn, sql):
        for r in batch:
            key = (r[1], r[2] or f"~{r[0]:016x}")
            groups.setdefault(key, []).append(r)
    rows = []
    for (mta, qid), rs in groups.items():
        rs.sort(key=lambda r: (float(r[3]), r[0]))
        lines = Lines()
        for r in rs:
            _apply(lines, r)
        sender = next((r[4] for r in rs if r[4]), "")
        rows.append(_row(ids, (ids[mta], qid), float(rs[0][3]), lines, sender_id=ids[sender]))
        if len(rows) >= BATCH:
            _insert(conn, rows)
            rows = []
    _insert(conn, rows)


def upgrade() -> None:
    conn = op.get_bind()
    _tables()
    ids = _names(conn)
    _messages(conn, ids)
    _orphans(conn, ids)
    for table, cols in (
        ("counters", ("name", "bucket", "value")),
        ("sender_days", ("day", "messages", "recipients", "delivered", "failed", "hours")),
    ):
        conn.exec_driver_sql(
            f"INSERT INTO {table}_0009 (sender_id, {', '.join(cols)}) "
            f"SELECT n.id, {', '.join('t.' + c for c in cols)} "
            f"FROM {table} t JOIN names n ON n.name = t.sender"
        )
    for table in ("recipients", "messages", "counters", "sender_days"):
        op.drop_table(table)
    for table in ("messages", "counters", "sender_days"):
        op.rename_table(f"{table}_0009", table)
    op.create_index("ix_messages_sender_time", "messages", ["sender_id", "time"])
    op.create_index("ix_messages_time", "messages", ["time"], postgresql_using="brin")
    op.create_index("ix_sender_days_day", "sender_days", ["day"])
    if conn.dialect.name == "postgresql":  # constraint names are relations there
        for table in ("counters", "sender_days"):
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT pk_{table}_0009 TO pk_{table}")


def downgrade() -> None:
    raise NotImplementedError("0009 packs and drops what it converts: restore a backup")
