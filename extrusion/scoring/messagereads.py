"""The store's reads of messages, their recipients and the per-sender counters, each
inside the caller's read transaction. A message's recipients are packed in its row
(packing.py); names (sender, MTA, HELO, client name) are ids into `names`."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.scoring import schema
from extrusion.scoring.names import lookup_one, text_of
from extrusion.scoring.packedwrite import ORPHAN_PREFIX
from extrusion.scoring.packing import (
    AUTO_REPLY,
    LIST_LIKE,
    NULL_SENDER,
    ORPHAN,
    STATUS_CODE,
    recipients,
)
from extrusion.scoring.rows import (
    COUNTER_BUCKET,
    QUEUED,
    StoredMessage,
    StoredRecipient,
    counter_bucket,
)

_m = schema.messages


def _submitted() -> Any:
    return _m.c.flags.op("&")(ORPHAN) == 0


def message(conn: Connection, queue_id: str, mta: str) -> StoredMessage | None:
    """The submission stored under (mta, queue id): None for a row of outcomes only."""
    mta_id = lookup_one(conn, mta)
    if mta_id is None:
        return None
    r = conn.execute(sa.select(_m).where(_m.c.mta_id == mta_id, _m.c.queue_id == queue_id,
                                         _submitted())).mappings().first()
    return None if r is None else _stored(r, _texts(conn, [r]))


def undelivered_queue_ids(conn: Connection, sender: str, mta: str | None) -> list[str]:
    """The sender's messages with recipients still lacking a final outcome."""
    sender_id = lookup_one(conn, sender)
    if sender_id is None:
        return []
    q = sa.select(_m.c.queue_id).where(
        _m.c.sender_id == sender_id, _submitted(),
        _m.c.delivered + _m.c.failed < _m.c.rcpt_count)
    if mta is not None:
        if (mta_id := lookup_one(conn, mta)) is None:
            return []
        q = q.where(_m.c.mta_id == mta_id)
    return list(dict.fromkeys(conn.execute(q.order_by(_m.c.time, _m.c.queue_id)).scalars()))


def messages(conn: Connection, sender: str, since: float,
             until: float | None) -> list[StoredMessage]:
    """The sender's messages in the window, each recipient with its last outcome; the
    outcomes of submissions never seen as messages of their own (envelope empty), those
    refused before queueing one per MTA under an empty queue id."""
    sender_id = lookup_one(conn, sender)
    if sender_id is None:
        return []
    q = sa.select(_m).where(_m.c.sender_id == sender_id, _m.c.time >= since)
    if until is not None and until != float("inf"):
        q = q.where(_m.c.time <= until)
    rows = list(conn.execute(q.order_by(_m.c.time, _m.c.queue_id)).mappings())
    texts = _texts(conn, rows)
    out: list[StoredMessage] = []
    refused: dict[str, list[StoredMessage]] = {}
    for r in rows:
        msg = _stored(r, texts, with_recipients=True)
        if r["flags"] & ORPHAN and r["queue_id"].startswith(ORPHAN_PREFIX):
            refused.setdefault(msg.mta, []).append(msg)
        else:
            out.append(msg)
    for mta, group in refused.items():
        rcpts = tuple(x for g in group for x in g.recipients)
        out.append(StoredMessage(time=group[0].time, mta=mta, queue_id="", sender=sender,
                                 rcpt_count=len({x.recipient for x in rcpts}),
                                 recipients=rcpts))
    out.sort(key=lambda x: x.time)
    return out


def outcomes_recorded(conn: Connection, mta: str, queue_id: str
                      ) -> set[tuple[str, str, float]]:
    """(recipient, status, time to the millisecond) of each recipient's last outcome."""
    mta_id = lookup_one(conn, mta)
    if mta_id is None:
        return set()
    r = conn.execute(sa.select(_m.c.time, _m.c.rcpts).where(
        _m.c.mta_id == mta_id, _m.c.queue_id == queue_id)).first()
    if r is None:
        return set()
    return {(x.recipient, x.status, x.time) for x in recipients(r[1], float(r[0]))
            if x.status != QUEUED}


def counters(conn: Connection, sender: str, name: str, since: float) -> dict[int, float]:
    """{bucket: value} of one counter from `since` on: the minute rows kept, and before
    the first bucket kept (the prune's horizon) the same counts read from `messages`."""
    sender_id = lookup_one(conn, sender)
    if sender_id is None:
        return {}
    t = schema.counters
    q = sa.select(t.c.bucket, t.c.value).where(
        t.c.sender_id == sender_id, t.c.name == name, t.c.bucket >= int(since))
    out = {int(b): float(v) for b, v in conn.execute(q.order_by(t.c.bucket))}
    horizon = conn.execute(sa.select(sa.func.max(t.c.bucket)).where(
        t.c.sender_id == schema.COUNTERS_HORIZON[0],
        t.c.name == schema.COUNTERS_HORIZON[1])).scalar()
    if horizon is not None and since < horizon:
        for b, v in _from_messages(conn, sender_id, name, since, float(horizon)).items():
            if b < horizon:
                out[b] = out.get(b, 0.0) + v
    return dict(sorted(out.items()))


def _from_messages(conn: Connection, sender_id: int, name: str, since: float,
                   until: float) -> dict[int, float]:
    """A counter's minute sums from the sender's messages in [since, until): messages
    and recipients at submission, outcomes in their message's minute."""
    code = STATUS_CODE.get(name)
    if name not in ("messages", "recipients") and code is None:
        return {}
    q = sa.select(_m.c.time, _m.c.flags, _m.c.rcpt_count, _m.c.delivered, _m.c.rcpts).where(
        _m.c.sender_id == sender_id, _m.c.time >= int(since) // COUNTER_BUCKET * COUNTER_BUCKET,
        _m.c.time < until)
    out: dict[int, float] = defaultdict(float)
    for t, flags, rcpt_count, delivered, rcpts in conn.execute(q):
        b = counter_bucket(float(t))
        if name == "messages":
            out[b] += 0 if flags & ORPHAN else 1
        elif name == "recipients":
            out[b] += rcpt_count
        elif name == "sent":
            out[b] += delivered
        else:
            out[b] += sum(x.status == name for x in recipients(rcpts, float(t)))
    return {b: v for b, v in out.items() if v}


def _texts(conn: Connection, rows: list[Any]) -> dict[int, str]:
    return text_of(conn, {r[c] for r in rows
                          for c in ("mta_id", "sender_id", "helo_id", "client_name_id")})


def _stored(r: Any, texts: dict[int, str], with_recipients: bool = False) -> StoredMessage:
    rcpts: tuple[StoredRecipient, ...] = ()
    if with_recipients:
        rcpts = tuple(StoredRecipient(time=x.time, recipient=x.recipient, status=x.status,
                                      outcome_class=x.cls, dsn=x.dsn, reply=x.reply)
                      for x in sorted(recipients(r["rcpts"], r["time"]), key=_by_time))
    orphan = bool(r["flags"] & ORPHAN)
    return StoredMessage(
        time=r["time"], mta=texts.get(r["mta_id"], ""),
        queue_id="" if r["queue_id"].startswith(ORPHAN_PREFIX) else r["queue_id"],
        sender=texts.get(r["sender_id"], ""), envelope_from=r["envelope_from"],
        helo=texts.get(r["helo_id"], ""), client_addr=r["client_addr"],
        client_name=texts.get(r["client_name_id"], ""), size=r["size"],
        rcpt_count=len(rcpts) if orphan else r["rcpt_count"],
        null_sender=bool(r["flags"] & NULL_SENDER), auto_reply=bool(r["flags"] & AUTO_REPLY),
        list_like=bool(r["flags"] & LIST_LIKE), list_id=r["list_id"], recipients=rcpts)


def _by_time(x: Any) -> float:
    return float(x.time)

