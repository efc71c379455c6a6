"""The engine's batched writes: one transaction per flush, bulk rows straight to the
driver's executemany (SQLAlchemy's per-row parameter processing would cost more than
the database does). What differs between databases is behind `dialects.WritePath`."""

from __future__ import annotations

import json
import operator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.scoring import audit, schema
from extrusion.scoring.bounds import bound_override
from extrusion.scoring.database import StoreError
from extrusion.scoring.dialects import WritePath, chunks
from extrusion.scoring.merging import merge_sender
from extrusion.scoring.names import Interning
from extrusion.scoring.packedwrite import write_messages
from extrusion.scoring.rows import (
    DICT_DEFAULTS,
    PIN_CLEAR,
    PIN_SET,
    Batch,
    MessageRow,
    OverrideRow,
    RecipientRow,
    SenderRow,
)
from extrusion.scoring.sqltext import (
    COUNTERS_UPSERT,
    RATE_USE_UPSERT,
    SENDER_COLUMNS,
    SENDER_PLACEHOLDER,
    SENDER_UPDATE,
    SENDER_UPDATE_FIELDS,
)


def write_batch(conn: Connection, path: WritePath, batch: Batch, half_life: float,
                names: Interning) -> list[SenderRow]:
    """Everything in the (bounded) batch, in the caller's transaction; the merged senders."""
    counters = batch.counters
    messages = [*_typed(MessageRow, batch.messages, "messages"), *batch.message_rows]
    recipients = [*_typed(RecipientRow, batch.recipients, "recipients"),
                  *batch.recipient_rows]
    if messages or recipients:
        counters = write_messages(conn, path, names, messages, recipients, counters)
    if counters:
        ids = names.ids(conn, path, {s for s, _, _ in counters})
        conn.exec_driver_sql(path.sql(COUNTERS_UPSERT), [
            (ids[s], n, b, v) for (s, n, b), v in path.in_lock_order(counters.items())])
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
