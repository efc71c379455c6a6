"""The store's single writes (admin tools, notifications, baselines, checkpoints),
each inside the caller's write transaction. Every value is bounded to its column
first (bounds.py): client-chosen lengths never make the database refuse."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.checkpoint import Position
from extrusion.scoring import schema
from extrusion.scoring.bounds import bound_row
from extrusion.scoring.dialects import WritePath
from extrusion.scoring.events import StateChange
from extrusion.scoring.rows import SenderRow
from extrusion.scoring.sqltext import SENDER_COLUMN_OF


def state_change_row(change: StateChange) -> dict[str, Any]:
    """A StateChange as a `state_changes` row (also used by the engine's batches)."""
    return {
        "time": change.time, "sender": change.sender, "old_state": change.old.value,
        "new_state": change.new.value, "score": change.score, "reason": change.reason,
        "who": change.who, "evidence": change.evidence,
    }


def _upsert(conn: Connection, path: WritePath, table: sa.Table, key: str,
            values: dict[str, Any]) -> None:
    """INSERT `values`, or UPDATE every other column of the row with the same `key`."""
    ins = path.insert(table)
    conn.execute(ins.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={k: ins.excluded[k] for k in values if k != key},
    ), values)


def put_sender(conn: Connection, path: WritePath, row: SenderRow) -> SenderRow:
    t = schema.senders
    now = path.now(conn)
    old = conn.execute(sa.select(t.c.version).where(t.c.key == row.key)).scalar()
    new = dataclasses.replace(row, version=(old or 0) + 1, changed_at=now)
    values = bound_row(t, {col: getattr(new, attr) for attr, col in SENDER_COLUMN_OF.items()})
    _upsert(conn, path, t, "key", values)
    return new


def claim_notifications(conn: Connection, path: WritePath,
                        events: Sequence[tuple[str, str, float]], mta: str,
                        seconds: float) -> set[tuple[str, str]]:
    t = schema.notify_claims
    ins = path.insert(t)
    stmt = ins.on_conflict_do_update(
        index_elements=[t.c.sender, t.c.state],
        set_={"mta": ins.excluded.mta, "claimed_at": ins.excluded.claimed_at},
        where=sa.or_(t.c.claimed_at <= ins.excluded.claimed_at - seconds,
                     sa.and_(t.c.mta == ins.excluded.mta,
                             t.c.claimed_at < ins.excluded.claimed_at)),
    ).returning(t.c.sender, t.c.state)
    won: set[tuple[str, str]] = set()
    # One lock order for every host: two claiming the same senders cannot deadlock.
    for sender, state, at in sorted(events):
        values = bound_row(t, {"sender": sender, "state": state, "mta": mta,
                               "claimed_at": at})
        if conn.execute(stmt, values).first() is not None:
            won.add((sender, state))
    return won


def delete_override(conn: Connection, match: str) -> bool:
    t = schema.overrides
    return bool(conn.execute(t.delete().where(t.c.match == match)).rowcount)


def add_state_change(conn: Connection, change: StateChange) -> None:
    conn.execute(schema.state_changes.insert(),
                 [bound_row(schema.state_changes, state_change_row(change))])


def save_baselines(conn: Connection, path: WritePath,
                   baselines: dict[str, dict[str, Any]], now: float) -> None:
    t = schema.sender_baselines
    ins = path.insert(t)
    rows = [bound_row(t, {"key": k, "baseline": v, "updated": now})
            for k, v in sorted(baselines.items())]  # one lock order for PostgreSQL
    conn.execute(ins.on_conflict_do_update(
        index_elements=[t.c.key],
        set_={"baseline": ins.excluded.baseline, "updated": ins.excluded.updated},
    ), rows)


_CHECKPOINT_COLUMNS = ("name", *Position._fields, "updated")
# Plain SQL, the same text every time: the log feed saves its position twice a
# poll, and building and compiling a SQLAlchemy upsert cost more than the write.
# ("offset" is a keyword in both databases.)
_QUOTED = [f'"{c}"' for c in _CHECKPOINT_COLUMNS]
CHECKPOINT_UPSERT = (
    f"INSERT INTO checkpoints ({', '.join(_QUOTED)}) VALUES ({', '.join('?' * len(_QUOTED))}) "
    f"ON CONFLICT (name) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _QUOTED[1:])}")


def set_checkpoint(conn: Connection, path: WritePath, name: str, position: Position) -> None:
    values = bound_row(schema.checkpoints,
                       {"name": name, **position._asdict(), "updated": time.time()})
    conn.exec_driver_sql(path.sql(CHECKPOINT_UPSERT),
                         tuple(values[c] for c in _CHECKPOINT_COLUMNS))
