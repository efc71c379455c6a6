"""The engine's batched writes: one transaction per flush, bulk rows straight to the
driver's executemany (SQLAlchemy's per-row parameter processing would cost more than
the database does). What differs between databases is behind `dialects.WritePath`."""

from __future__ import annotations

import json
import operator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.scoring import audit, queueids, schema
from extrusion.scoring.bounds import bound_override
from extrusion.scoring.database import StoreError
from extrusion.scoring.dialects import MessageKey, WritePath, by_queue_ids, chunks
from extrusion.scoring.merging import merge_sender
from extrusion.scoring.rows import (
    DICT_DEFAULTS,
    PIN_CLEAR,
    PIN_SET,
    QUEUED,
    Batch,
    MessageRow,
    OverrideRow,
    RecipientRow,
    SenderRow,
    counter_bucket,
)
from extrusion.scoring.sqltext import (
    COUNTERS_UPSERT,
    QUEUED_ANSWERED,
    RATE_USE_UPSERT,
    RECIPIENT_ROWS,
    SENDER_COLUMNS,
    SENDER_PLACEHOLDER,
    SENDER_UPDATE,
    SENDER_UPDATE_FIELDS,
    STORED_RECIPIENTS,
)

# Leave out a recipient's "queued" row when its outcome is written in the same batch
# (a switch for benchmarks/storesize.py, which measures both).
ELIDE_QUEUED = True
Counters = dict[tuple[str, str, int], float]
RecipientKey = tuple[str, str, str]  # (mta, queue id, recipient)


def write_batch(conn: Connection, path: WritePath, batch: Batch,
                half_life: float) -> list[SenderRow]:
    """Everything in the (bounded) batch, in the caller's transaction; the merged senders."""
    counters = batch.counters
    known: set[RecipientKey] = set()  # recipients a first report already wrote
    if batch.messages or batch.message_rows:
        rows = [*_typed(MessageRow, batch.messages, "messages"), *batch.message_rows]
        counters, repeated = _write_messages(conn, path, rows, counters)
        if repeated:
            known = _stored_recipients(conn, path, repeated)
    recipient_rows = [*_typed(RecipientRow, batch.recipients, "recipients"),
                      *batch.recipient_rows]
    if ELIDE_QUEUED and recipient_rows:
        recipient_rows, answered = _without_answered(recipient_rows)
        if answered:
            # Written by an earlier flush: the outcome takes its place.
            conn.exec_driver_sql(path.sql(QUEUED_ANSWERED), sorted(answered))
    if known:
        recipient_rows = [r for r in recipient_rows if r.status != QUEUED
                          or (r.mta, r.queue_id, r.recipient) not in known]
    if recipient_rows:
        conn.exec_driver_sql(path.sql(RECIPIENT_ROWS), recipient_rows)
    if counters:
        conn.exec_driver_sql(path.sql(COUNTERS_UPSERT), [
            (s, n, b, v) for (s, n, b), v in path.in_lock_order(counters.items())])
    if batch.rate_use:
        conn.exec_driver_sql(path.sql(RATE_USE_UPSERT), [
            (s, m, b, r, n) for (s, m, b), (r, n) in path.in_lock_order(batch.rate_use.items())])
    merged = _merge_senders(conn, path, batch, half_life) if batch.senders else []
    # After the senders' rows are locked: a second host's copy of a transition
    # waits for the first one's commit and sees its row (audit.py).
    changes = _new_transitions(conn, batch.state_changes)
    if changes:
        conn.execute(schema.state_changes.insert(), changes)
    return merged


def _typed(cls: type[MessageRow] | type[RecipientRow], rows: list[dict[str, Any]],
           table: str) -> list[Any]:
    """Dict rows as typed rows, missing columns defaulted."""
    if not rows:
        return []
    get = operator.itemgetter(*cls._fields)
    try:
        return [cls._make(get(r)) for r in rows]  # a spooled batch's rows carry every column
    except KeyError:
        pass
    try:
        return [cls.from_dict(r) for r in rows]
    except TypeError:
        required = [f for f in cls._fields
                    if f not in cls._field_defaults and f not in DICT_DEFAULTS[cls]]
        missing = next(f for r in rows for f in required if f not in r)
        raise StoreError(f"{table} row without {missing!r} "
                         f"(needs {', '.join(required)})") from None


def _write_messages(conn: Connection, path: WritePath, rows: list[MessageRow],
                    counters: Counters) -> tuple[Counters, set[MessageKey]]:
    """Message rows, each message counted once.

    With the milter and the log feed both attached, every message is
    reported twice, by two processes that cannot see each other's memory.
    The row of the first report is inserted and counted ("messages" and
    "recipients" counters); a later one only merges its richer columns into
    it and adds only the recipients the first lacked. This holds when the two
    reports are written at the same moment (see `dialects.py` for how each
    database keeps them apart). Returns the counters to add and the (mta,
    queue id) of repeated reports.
    """
    first: dict[MessageKey, MessageRow] = {}
    again: list[MessageRow] = []
    for r in rows:
        if (r.mta, r.queue_id) in first:
            again.append(r)  # a message reported twice within one batch: merged
        else:
            first[(r.mta, r.queue_id)] = r
    inserted, known, stored = path.add_messages(conn, rows, first, again)
    counted = dict(counters)

    def count(row: MessageRow, messages: float, recipients: float) -> None:
        for name, n in (("messages", messages), ("recipients", recipients)):
            if n > 0:
                k = (row.sender, name, counter_bucket(row.time))
                counted[k] = counted.get(k, 0.0) + n

    repeated: set[MessageKey] = set()
    for key in inserted:
        count(first[key], 1.0, float(first[key].rcpt_count))
    for r in known:
        key = (r.mta, r.queue_id)
        t, rcpt_count = stored.get(key, (r.time, 0))
        if queueids.reused(t, r.time):
            count(r, 1.0, float(r.rcpt_count))  # another message under an old queue id
        else:
            repeated.add(key)
            count(r, 0.0, float(r.rcpt_count - rcpt_count))  # recipients the first lacked
    return counted, repeated


def _stored_recipients(conn: Connection, path: WritePath,
                       keys: set[MessageKey]) -> set[RecipientKey]:
    """(mta, queue id, recipient) already stored for these messages."""
    found = by_queue_ids(conn, path, STORED_RECIPIENTS, keys)
    return {(mta, qid, rcpt) for mta, (qid, rcpt) in found}


def _without_answered(rows: list[RecipientRow]
                      ) -> tuple[list[RecipientRow], set[RecipientKey]]:
    """A recipient's "queued" row says nothing its outcome does not (it was a third of a
    quiet sender's store, benchmarks/storesize.py): the rows without each "queued" one
    whose outcome is among them, and the (mta, queue id, recipient) of the outcomes whose
    "queued" row an earlier batch wrote, to delete."""
    # A recipient refused before it had a queue id (NOQUEUE: half an MX's rows) never had
    # a "queued" row: deleting one by (mta, "", recipient) walked every earlier NOQUEUE row.
    answered = {(r.mta, r.queue_id, r.recipient) for r in rows
                if r.status != QUEUED and r.queue_id}
    if not answered:
        return rows, answered
    queued = {(r.mta, r.queue_id, r.recipient) for r in rows if r.status == QUEUED}
    if not queued:
        return rows, answered
    kept = [r for r in rows if r.status != QUEUED
            or (r.mta, r.queue_id, r.recipient) not in answered]
    return kept, answered - queued


def _new_transitions(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The batch's audit rows but the engine's transitions another host (or this
    batch) wrote already."""
    t = schema.state_changes
    kept: list[dict[str, Any]] = []
    for r in rows:
        if r.get("who") != audit.ENGINE:
            kept.append(r)
            continue
        at = float(r["time"])
        q = sa.select(t.c.time, t.c.old_state, t.c.new_state).where(
            t.c.sender == r["sender"], t.c.who == audit.ENGINE,
            t.c.time.between(at - audit.DUPLICATE_SECONDS, at + audit.DUPLICATE_SECONDS))
        recent = [(float(x[0]), x[1], x[2]) for x in conn.execute(q)]
        recent += [(float(k["time"]), k["old_state"], k["new_state"]) for k in kept
                   if k["sender"] == r["sender"] and k.get("who") == audit.ENGINE]
        if not audit.duplicate(at, r["old_state"], r["new_state"], recent):
            kept.append(r)
    return kept


_SENDER_UPDATE_GET = operator.attrgetter(*SENDER_UPDATE_FIELDS)
_FINDINGS_AT = SENDER_UPDATE_FIELDS.index("findings")


def _sender_update_params(row: SenderRow) -> tuple[Any, ...]:
    params = list(_SENDER_UPDATE_GET(row))
    findings = params[_FINDINGS_AT]  # the one JSON column
    params[_FINDINGS_AT] = json.dumps(findings) if isinstance(findings, dict) else findings
    return tuple(params)


def _merge_senders(conn: Connection, path: WritePath, batch: Batch,
                   half_life: float) -> list[SenderRow]:
    t = schema.senders
    now = path.now(conn)
    keys = sorted(batch.senders)  # one lock order for every writer: no deadlocks
    # Placeholders first, so that SELECT ... FOR UPDATE has a row to lock even for
    # a sender two MTAs see for the first time at the same moment.
    conn.exec_driver_sql(
        path.sql(SENDER_PLACEHOLDER),
        [(k, batch.senders[k].time, batch.senders[k].time, batch.senders[k].time, now)
         for k in keys],
    )
    current: dict[str, SenderRow] = {}
    for chunk in chunks(keys):
        sel = sa.select(*SENDER_COLUMNS).where(t.c.key.in_(chunk)).order_by(t.c.key)
        for r in conn.execute(path.for_update(sel)):
            current[r[0]] = SenderRow(*r)
    merged = [merge_sender(current.get(k), batch.senders[k], half_life, now) for k in keys]
    conn.exec_driver_sql(path.sql(SENDER_UPDATE), [_sender_update_params(m) for m in merged])
    _sync_overrides(conn, path, batch, now)
    return merged


def _sync_overrides(conn: Connection, path: WritePath, batch: Batch, now: float) -> None:
    """Operator pins carried by the batch land in `overrides` too (the CLI's view)."""
    t = schema.overrides
    for d in batch.senders.values():
        if d.pin == PIN_CLEAR:
            conn.execute(t.delete().where(t.c.match == d.key))
        elif d.pin == PIN_SET and d.pinned:
            upsert_override(conn, path, OverrideRow(
                d.key, d.pinned, "", d.pinned_reason or "", d.pinned_by or "", now))


def upsert_override(conn: Connection, path: WritePath, row: OverrideRow) -> None:
    t = schema.overrides
    row = bound_override(row)
    values = {"match": row.match, "action": row.action, "limits": row.limits,
              "reason": row.reason, "who": row.who, "created": row.created}
    ins = path.insert(t)
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=[t.c.match],
            set_={k: ins.excluded[k] for k in values if k != "match"},
        ),
        values,
    )
