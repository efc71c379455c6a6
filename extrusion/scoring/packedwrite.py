"""A flush's messages and outcomes written as packed `messages` rows (packing.py).

The engine hands over a row per message and one per recipient ("queued" at
submission, then each outcome). Here they become one row per message: a message's
INSERT carries its recipients, and outcomes of a message stored by an earlier flush
(or by another process: the milter and the log feed both report every message) are
merged into its row in Python and written back with one UPDATE per message per flush.
`dialects.WritePath.add_messages` decides, per database, which writer inserts a row
and locks the rows merged into.

A message reported twice is counted once ("messages" and "recipients" counters): the
report that inserts the row counts it, a later one only the recipients the first
lacked. Outcomes whose submission was never seen make a row of their own (ORPHAN),
which a later report of the submission completes; a refusal before queueing (no
queue id) is such a row under a made-up key.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from extrusion.scoring import queueids
from extrusion.scoring.database import StoreRefused
from extrusion.scoring.dialects import MessageKey, Packed, WritePath
from extrusion.scoring.names import Interning
from extrusion.scoring.packing import ORPHAN, Lines, flags
from extrusion.scoring.rows import QUEUED, MessageRow, RecipientRow, counter_bucket
from extrusion.scoring.sqltext import MESSAGE_UPDATE, PACKED_COLUMNS

Counters = dict[tuple[str, str, int], float]
ORPHAN_PREFIX = "~"  # a made-up queue id: no Postfix queue id starts with it
UNKNOWN = "unknown"  # a log's client name when the milter may know better
_AT = {c: i for i, c in enumerate(PACKED_COLUMNS)}


@dataclass
class Pending:
    """What one flush says of one message."""

    message: MessageRow | None = None
    rcpts: list[RecipientRow] = field(default_factory=list)

    def sender(self) -> str:
        if self.message is not None:
            return self.message.sender
        return next((r.sender for r in self.rcpts if r.sender), "")


def gather(messages: Iterable[MessageRow], recipients: Iterable[RecipientRow]
           ) -> dict[tuple[str, str], Pending]:
    """The batch's rows by (mta, queue id); a message reported twice in it merged."""
    out: dict[tuple[str, str], Pending] = {}
    for m in messages:
        _require(m, ("mta", "queue_id", "sender"), "messages")
        p = out.setdefault((m.mta, m.queue_id), Pending())
        p.message = m if p.message is None else _merged(p.message, m)
    for r in recipients:
        _require(r, ("mta", "queue_id", "recipient", "status"), "recipients")
        qid = r.queue_id or ORPHAN_PREFIX + secrets.token_hex(8)
        out.setdefault((r.mta, qid), Pending()).rcpts.append(r)
    return out


def _require(row: MessageRow | RecipientRow, fields: tuple[str, ...], what: str) -> None:
    """Refuse a row without text where the store needs it (as a NOT NULL column did)."""
    for f in fields:
        if type(getattr(row, f)) is not str:
            raise StoreRefused(f"store refused the write: {what} row without {f}")


def _merged(old: MessageRow, new: MessageRow) -> MessageRow:
    """Two reports of one message as one: the richer value of each column (a HELO, a
    client name, header flags only the milter sees; the most recipients; the earliest
    time). A row older than a queue id lives is replaced (queueids.py)."""
    if queueids.reused(old.time, new.time):
        return new
    name = new.client_name if old.client_name in ("", UNKNOWN) and new.client_name \
        else old.client_name
    return old._replace(
        time=min(old.time, new.time), sender=old.sender or new.sender,
        envelope_from=old.envelope_from or new.envelope_from, helo=old.helo or new.helo,
        client_addr=old.client_addr or new.client_addr, client_name=name,
        size=max(old.size, new.size), rcpt_count=max(old.rcpt_count, new.rcpt_count),
        message_id=old.message_id or new.message_id,
        null_sender=old.null_sender or new.null_sender,
        auto_reply=old.auto_reply or new.auto_reply, list_like=old.list_like or new.list_like,
        list_id=old.list_id or new.list_id)


def _names(pending: dict[tuple[str, str], Pending]) -> set[str]:
    out = {"", UNKNOWN}
    for (mta, _), p in pending.items():
        out.add(mta)
        out.update(r.sender for r in p.rcpts)
        if (m := p.message) is not None:
            out.update((m.sender, m.helo, m.client_name))
    return out


def write_messages(conn: Connection, path: WritePath, names: Interning,
                   messages: list[MessageRow], recipients: list[RecipientRow],
                   counters: Counters) -> Counters:
    """The batch's message and recipient rows into `messages`; the counters to add
    (`counters` and each message counted once)."""
    pending = gather(messages, recipients)
    if not pending:
        return counters
    ids = names.ids(conn, path, _names(pending))
    by_key = {(ids[mta], qid): p for (mta, qid), p in pending.items()}
    inserted, stored = path.add_messages(
        conn, list(by_key), lambda k: _fresh(k, by_key[k], ids).row())
    counted = dict(counters)

    def count(m: MessageRow, rcpts: int, message: bool) -> None:
        for name, n in (("messages", 1.0 if message else 0.0), ("recipients", float(rcpts))):
            if n > 0:
                k = (m.sender, name, counter_bucket(m.time))
                counted[k] = counted.get(k, 0.0) + n

    updates: list[Packed] = []
    for key in path.in_lock_order(stored):
        p = by_key[key]
        row, new_message, rcpt_before = _merge(stored[key], p, ids)
        updates.append(row.update())
        if p.message is not None:
            count(p.message, p.message.rcpt_count - (0 if new_message else rcpt_before),
                  new_message)
    if updates:
        conn.exec_driver_sql(path.sql(MESSAGE_UPDATE), updates)
    for key in inserted:
        if (m := by_key[key].message) is not None:
            count(m, m.rcpt_count, True)
    return counted


@dataclass
class Row:
    """A `messages` row being built: its columns, and its recipients unpacked."""

    cols: list[Any]
    lines: Lines

    def row(self) -> Packed:
        cols = self.cols
        cols[_AT["rcpts"]], cols[_AT["delivered"]], cols[_AT["failed"]] = \
            self.lines.pack(cols[_AT["time"]])
        return tuple(cols)

    def update(self) -> Packed:
        r = self.row()
        return (*(r[_AT[c]] for c in PACKED_COLUMNS if c not in ("mta_id", "queue_id")),
                r[_AT["mta_id"]], r[_AT["queue_id"]])


def _envelope(cols: list[Any], m: MessageRow, ids: dict[str, int]) -> None:
    cols[_AT["time"]] = m.time
    cols[_AT["sender_id"]] = ids[m.sender]
    cols[_AT["size"]] = m.size
    cols[_AT["helo_id"]] = ids[m.helo]
    cols[_AT["client_name_id"]] = ids[m.client_name]
    cols[_AT["rcpt_count"]] = m.rcpt_count
    cols[_AT["flags"]] = flags(m.null_sender, m.auto_reply, m.list_like)
    cols[_AT["envelope_from"]] = m.envelope_from
    cols[_AT["client_addr"]] = m.client_addr
    cols[_AT["list_id"]] = m.list_id


def _fresh(key: MessageKey, p: Pending, ids: dict[str, int]) -> Row:
    """The row this flush alone makes for `key`."""
    cols: list[Any] = [None] * len(PACKED_COLUMNS)
    cols[_AT["mta_id"]], cols[_AT["queue_id"]] = key
    if p.message is not None:
        _envelope(cols, p.message, ids)
    else:
        empty = ids[""]
        cols[_AT["time"]] = min(r.time for r in p.rcpts)
        cols[_AT["sender_id"]] = ids[p.sender()]
        for c in ("size", "rcpt_count"):
            cols[_AT[c]] = 0
        cols[_AT["helo_id"]] = cols[_AT["client_name_id"]] = empty
        cols[_AT["flags"]] = ORPHAN
        for c in ("envelope_from", "client_addr", "list_id"):
            cols[_AT[c]] = ""
    row = Row(cols, Lines())
    _apply(row.lines, p.rcpts)
    return row


def _apply(lines: Lines, rcpts: list[RecipientRow]) -> None:
    for r in rcpts:
        if r.status == QUEUED:
            lines.queued(r.recipient)
        else:
            lines.outcome(r.recipient, r.status, r.time, r.dsn, r.outcome_class, r.reply)


def _merge(stored: Packed, p: Pending, ids: dict[str, int]) -> tuple[Row, bool, int]:
    """The stored row with this flush's report merged in; whether the flush's message is
    a new one (the row held only outcomes, or an older message under its queue id), and
    the stored row's rcpt_count."""
    cols = list(stored)
    at = _AT
    lines = Lines.unpack(cols[at["rcpts"]], cols[at["time"]], cols[at["delivered"]],
                         cols[at["failed"]])
    before, new_message = cols[at["rcpt_count"]], False
    m = p.message
    if m is not None and (cols[at["flags"]] & ORPHAN
                          or queueids.reused(cols[at["time"]], m.time)):
        new_message = True
        if not cols[at["flags"]] & ORPHAN:
            lines = Lines()  # another message under an old queue id: the old one is gone
        _envelope(cols, m, ids)  # the submission's time is the row's (lines keep theirs)
    elif m is not None:
        _merge_envelope(cols, m, ids)
    elif cols[at["sender_id"]] == ids[""] and (s := p.sender()):
        cols[at["sender_id"]] = ids[s]  # outcomes without a sender, then one with it
    if p.rcpts and cols[at["flags"]] & ORPHAN:  # outcomes only: its first one's time
        cols[at["time"]] = min(cols[at["time"]], *(r.time for r in p.rcpts))
    row = Row(cols, lines)
    _apply(lines, p.rcpts)
    return row, new_message, before


def _merge_envelope(cols: list[Any], m: MessageRow, ids: dict[str, int]) -> None:
    """A second report of a stored message: each column keeps the richer value."""
    at = _AT
    empty = ids[""]
    cols[at["time"]] = min(cols[at["time"]], m.time)
    if cols[at["helo_id"]] == empty:
        cols[at["helo_id"]] = ids[m.helo]
    if cols[at["client_name_id"]] in (empty, ids[UNKNOWN]) and m.client_name:
        cols[at["client_name_id"]] = ids[m.client_name]
    for c in ("envelope_from", "client_addr", "list_id"):
        if not cols[at[c]]:
            cols[at[c]] = getattr(m, c)
    cols[at["size"]] = max(cols[at["size"]], m.size)
    cols[at["rcpt_count"]] = max(cols[at["rcpt_count"]], m.rcpt_count)
    cols[at["flags"]] |= flags(m.null_sender, m.auto_reply, m.list_like)
