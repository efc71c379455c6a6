"""The store's reads, each inside the caller's read transaction: senders for the engine's
refresh and the operator, the audit trail, messages and outcomes, counters and the
budget other hosts used, baselines and the log followers' checkpoints."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.checkpoint import Position
from extrusion.scoring import schema
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.limits import DAY, HOUR, OthersUse
from extrusion.scoring.rows import QUEUED, OverrideRow, SenderRow, StoredMessage, StoredRecipient
from extrusion.scoring.sqltext import SENDER_COLUMN_OF

# Statuses after which a recipient needs no further delivery attempt.
FINAL_STATUSES = ("sent", "bounced", "expired", "rejected")


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


def changed_senders(conn: Connection, since: float | None,
                    quiet_before: float | None = None) -> list[SenderRow]:
    t = schema.senders
    q = sa.select(t).where(t.c.version > 0)
    if since is not None:
        q = q.where(t.c.changed_at >= since)
    if quiet_before is not None:
        q = q.where(sa.or_(t.c.state != State.OK.value, t.c.pinned.is_not(None),
                           t.c.score_time >= quiet_before))
    return [sender_row(r) for r in conn.execute(q).mappings()]


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


def message(conn: Connection, queue_id: str, mta: str) -> StoredMessage | None:
    t = schema.messages
    q = (sa.select(t).where(t.c.mta == mta, t.c.queue_id == queue_id)
         .order_by(t.c.time.desc(), t.c.id.desc()).limit(1))
    r = conn.execute(q).mappings().first()
    return None if r is None else _stored_message(r)


def undelivered_queue_ids(conn: Connection, sender: str, mta: str | None) -> list[str]:
    m, r = schema.messages, schema.recipients
    finished = (
        sa.select(sa.func.count(sa.distinct(r.c.recipient)))
        .where(r.c.mta == m.c.mta, r.c.queue_id == m.c.queue_id,
               r.c.status.in_(FINAL_STATUSES))
        .scalar_subquery()
    )
    q = sa.select(m.c.queue_id).where(m.c.sender == sender, finished < m.c.rcpt_count)
    if mta is not None:
        q = q.where(m.c.mta == mta)
    return list(dict.fromkeys(conn.execute(q.order_by(m.c.time, m.c.id)).scalars()))


def messages(conn: Connection, sender: str, since: float,
             until: float | None) -> list[StoredMessage]:
    m, r = schema.messages, schema.recipients
    mq = sa.select(m).where(m.c.sender == sender, m.c.time >= since)
    queues = sa.select(m.c.mta, m.c.queue_id).where(m.c.sender == sender, m.c.time >= since)
    orphan = sa.select(r).where(
        r.c.sender == sender, r.c.time >= since,
        ~sa.exists().where(m.c.mta == r.c.mta, m.c.queue_id == r.c.queue_id),
    )
    if until is not None and until != float("inf"):
        mq = mq.where(m.c.time <= until)
        queues = queues.where(m.c.time <= until)
        orphan = orphan.where(r.c.time <= until)
    rq = sa.select(r).where(sa.tuple_(r.c.mta, r.c.queue_id).in_(queues.distinct()))
    msgs = list(conn.execute(mq.order_by(m.c.time, m.c.id)).mappings())
    by_queue: dict[tuple[str, str], list[StoredRecipient]] = {}
    for row in conn.execute(rq.order_by(r.c.time, r.c.id)).mappings():
        by_queue.setdefault((row["mta"], row["queue_id"]), []).append(_recipient(row))
    orphans: dict[tuple[str, str], list[Any]] = {}
    for row in conn.execute(orphan.order_by(r.c.time, r.c.id)).mappings():
        orphans.setdefault((row["mta"], row["queue_id"]), []).append(row)
    out = [_stored_message(row, tuple(by_queue.get((row["mta"], row["queue_id"]), ())))
           for row in msgs]
    for (mta, qid), rows in orphans.items():
        rcpts = tuple(_recipient(x) for x in rows)
        out.append(StoredMessage(
            time=rows[0]["time"], mta=mta, queue_id=qid, sender=sender,
            rcpt_count=len({x.recipient for x in rcpts}), recipients=rcpts,
        ))
    out.sort(key=lambda x: x.time)
    return out


def outcomes_recorded(conn: Connection, mta: str, queue_id: str) -> set[tuple[str, str, float]]:
    r = schema.recipients
    q = sa.select(r.c.recipient, r.c.status, r.c.time).where(
        r.c.mta == mta, r.c.queue_id == queue_id, r.c.status != QUEUED)
    return {(rcpt, status, float(t)) for rcpt, status, t in conn.execute(q)}


def counters(conn: Connection, sender: str, name: str, since: float) -> dict[int, float]:
    t = schema.counters
    q = sa.select(t.c.bucket, t.c.value).where(
        t.c.sender == sender, t.c.name == name, t.c.bucket >= int(since))
    return {int(b): float(v) for b, v in conn.execute(q.order_by(t.c.bucket))}


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


def _stored_message(r: Any, recipients: tuple[StoredRecipient, ...] = ()) -> StoredMessage:
    return StoredMessage(
        time=r["time"], mta=r["mta"], queue_id=r["queue_id"], sender=r["sender"],
        envelope_from=r["envelope_from"], helo=r["helo"], client_addr=r["client_addr"],
        client_name=r["client_name"], size=r["size"], rcpt_count=r["rcpt_count"],
        message_id=r["message_id"], null_sender=bool(r["null_sender"]),
        auto_reply=bool(r["auto_reply"]), list_like=bool(r["list_like"]), list_id=r["list_id"],
        recipients=recipients,
    )


def _recipient(r: Any) -> StoredRecipient:
    return StoredRecipient(
        time=r["time"], recipient=r["recipient"], status=r["status"],
        outcome_class=r["outcome_class"], dsn=r["dsn"], reply=r["reply"], relay=r["relay"],
    )
