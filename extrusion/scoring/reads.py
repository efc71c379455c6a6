"""The store's reads, each inside the caller's read transaction: senders for the engine's
refresh and the operator, the audit trail, the budget other hosts used, baselines and
the log followers' checkpoints (messages, outcomes and counters: messagereads.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.checkpoint import Position
from extrusion.scoring import schema
from extrusion.scoring.dialects import chunks
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.limits import DAY, HOUR, OthersUse
from extrusion.scoring.rows import OverrideRow, SenderRow
from extrusion.scoring.sqltext import SENDER_COLUMN_OF


def sender_row(r: Any) -> SenderRow:
    return SenderRow(**{attr: r[col] for attr, col in SENDER_COLUMN_OF.items()})


def sender(conn: Connection, key: str) -> SenderRow | None:
    t = schema.senders
    r = conn.execute(sa.select(t).where(t.c.key == key)).mappings().first()
    return None if r is None or r["version"] == 0 else sender_row(r)


def senders(conn: Connection, state: str | None, min_score: float | None) -> list[SenderRow]:
    t = schema.senders
    q = sa.select(t).where(t.c.version > 0).order_by(t.c.score.desc(), t.c.key)
    if state is not None:
        q = q.where(t.c.state == state)
    if min_score is not None:
        q = q.where(t.c.score >= min_score)
    return [sender_row(r) for r in conn.execute(q).mappings()]


def _changed(q: sa.Select[Any], since: float | None) -> sa.Select[Any]:
    """`q` narrowed to the stored senders changed at or after `since` (None: all)."""
    t = schema.senders
    q = q.where(t.c.version > 0)
    return q if since is None else q.where(t.c.changed_at >= since)


def changed_senders(conn: Connection, since: float | None,
                    quiet_before: float | None = None) -> list[SenderRow]:
    t = schema.senders
    q = _changed(sa.select(t), since)
    if quiet_before is not None:
        q = q.where(sa.or_(t.c.state != State.OK.value, t.c.pinned.is_not(None),
                           t.c.score_time >= quiet_before))
    return [sender_row(r) for r in conn.execute(q).mappings()]


def changed_versions(conn: Connection, since: float | None) -> list[tuple[str, int]]:
    """(key, version) of the rows `changed_senders` would read: two columns, no row
    object, for a refresh to read in full only what it does not know yet."""
    t = schema.senders
    return [(str(k), int(v))
            for k, v in conn.execute(_changed(sa.select(t.c.key, t.c.version), since))]


def senders_keyed(conn: Connection, keys: Sequence[str]) -> list[SenderRow]:
    """The stored rows of `keys` (those that have one)."""
    t = schema.senders
    return [sender_row(r) for chunk in chunks(keys)
            for r in conn.execute(sa.select(t).where(t.c.version > 0, t.c.key.in_(chunk)))
            .mappings()]


def overrides(conn: Connection) -> list[OverrideRow]:
    t = schema.overrides
    return [OverrideRow(r.match, r.action, r.limits, r.reason, r.who, r.created)
            for r in conn.execute(sa.select(t).order_by(t.c.match))]


def state_changes(conn: Connection, sender: str | None, since: float | None,
                  until: float | None, limit: int | None) -> list[StateChange]:
    t = schema.state_changes
    q = sa.select(t).order_by(t.c.time, t.c.id)
    if sender is not None:
        q = q.where(t.c.sender == sender)
    if since is not None:
        q = q.where(t.c.time >= since)
    if until is not None:
        q = q.where(t.c.time <= until)
    if limit is not None:
        q = q.limit(limit)
    return [
        StateChange(time=r.time, sender=r.sender, old=State(r.old_state),
                    new=State(r.new_state), score=r.score, reason=r.reason, who=r.who,
                    evidence=dict(r.evidence or {}))
        for r in conn.execute(q)
    ]


def others_use(conn: Connection, mta: str, now: float,
               recent_seconds: float) -> dict[str, OthersUse]:
    t = schema.rate_use
    hour, recent = now - HOUR, now - recent_seconds

    def within(since: float, col: sa.Column[int]) -> Any:
        return sa.func.sum(sa.case((t.c.bucket >= int(since), col), else_=0))

    q = (sa.select(t.c.sender, within(hour, t.c.recipients), sa.func.sum(t.c.recipients),
                   within(hour, t.c.messages), sa.func.sum(t.c.messages),
                   within(recent, t.c.recipients))
         .where(t.c.mta != mta, t.c.bucket >= int(now - DAY)).group_by(t.c.sender))
    return {r[0]: OthersUse(*(int(v or 0) for v in r[1:])) for r in conn.execute(q)}


def baselines(conn: Connection, limit: int) -> dict[str, dict[str, Any]]:
    t = schema.sender_baselines
    rows = conn.execute(sa.select(t.c.key, t.c.baseline)
                        .order_by(t.c.updated.desc()).limit(limit)).all()
    return {str(k): v for k, v in rows if isinstance(v, dict)}


def checkpoint(conn: Connection, name: str) -> Position | None:
    t = schema.checkpoints
    r = conn.execute(sa.select(t.c.inode, t.c.offset, t.c.reached, t.c.device)
                     .where(t.c.name == name)).first()
    return None if r is None else Position(int(r[0]), int(r[1]), int(r[2]), int(r[3]))
