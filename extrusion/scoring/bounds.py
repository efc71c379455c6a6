"""Every value bounded on its way into the store, the same on SQLite and PostgreSQL.

Message-IDs, addresses, HELOs and replies are chosen by clients or read from
logs. PostgreSQL refuses a string longer than its VARCHAR ("value too long"),
a NUL character, an integer out of its column's range; SQLite stores the
first two and overflows on the third. A refused row used to fail its whole
batch again and again, so values are made to fit here, in Python, for both
databases. The limits come from the column types in `schema` (never a list
kept by hand; the rows the engine hands over, before they are packed, from
`schema.written`):

- a string longer than its column keeps its head and ends in the marker
  `[+N]`, N the number of characters cut (`TRUNCATED`), so the value stays
  recognisable and the loss is visible; TEXT columns hold `schema.TEXT_LEN`
  characters, every string inside a JSON column `schema.JSON_TEXT_LEN`;
- NUL and lone surrogates (undecodable bytes a reader kept) become U+FFFD,
  which both databases store;
- an integer beyond its column's range is clamped to the range.

A value already within bounds is returned as the same object: the engine's
batches go through here at every flush.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from extrusion.scoring import schema
from extrusion.scoring.rows import (
    Batch,
    MessageRow,
    OverrideRow,
    RecipientRow,
    SenderDelta,
)

TRUNCATED = "[+{}]"  # appended to a cut string; {} = characters cut
REPLACEMENT = "\ufffd"  # stands for a character no database would take
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# More characters between two quotes of a JSON text than a string in it may hold.
_JSON_LONG_RUN = re.compile(f'[^"]{{{schema.JSON_TEXT_LEN + 1},}}')
_INT16 = 2**15 - 1
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1

Bounder = Callable[[Any], Any]


def bound_text(value: Any, limit: int) -> Any:
    """`value` (if a string) made storable and cut to `limit` characters with the marker."""
    if type(value) is not str:
        return value
    if "\x00" in value or (not value.isascii() and _UNSTORABLE.search(value)):
        value = _UNSTORABLE.sub(REPLACEMENT, value)
    if len(value) <= limit:
        return value
    marker = TRUNCATED.format(len(value) - limit)
    while True:  # the marker's own length decides how much is cut: settles in two rounds
        keep = limit - len(marker)
        if keep <= 0:
            return value[:limit]
        again = TRUNCATED.format(len(value) - keep)
        if len(again) == len(marker):
            return value[:keep] + again
        marker = again


def bound_json(value: Any) -> Any:
    """Every string (and key) inside a JSON value bounded to `schema.JSON_TEXT_LEN`;
    the same object when nothing needed it (sender findings go by at every flush)."""
    if type(value) is dict and json_fits(value):
        return value
    return _bound_json(value)


def json_fits(value: Any) -> bool:
    """Whether no string inside `value` needs bounding, told from its JSON text: one
    C-level pass instead of `_bound_json`'s call per string (sender findings, every
    flush). Only a sufficient test: whatever it cannot tell goes the general way.

    With ASCII escapes a NUL shows as `\\u0000` and a surrogate as `\\udXXX`; an escaped
    string is at least as long as the string, so no run of more than the limit between
    two quotes means no string over it, unless a string holds an escaped quote."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):  # not JSON as it is (a set, a cycle)
        return False
    if "\\u0000" in text or "\\ud" in text or '\\"' in text:
        return False
    return len(text) <= schema.JSON_TEXT_LEN or _JSON_LONG_RUN.search(text) is None


def _bound_json(value: Any) -> Any:
    if isinstance(value, str):
        return bound_text(value, schema.JSON_TEXT_LEN)
    if isinstance(value, dict):
        items = [(_bound_json(k), _bound_json(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(),
                                                              strict=True)):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        bounded = [_bound_json(v) for v in value]
        if all(b is v for b, v in zip(bounded, value, strict=True)):
            return value
        return bounded
    return value


def _clamp(limit: int) -> Bounder:
    def clamp(value: Any) -> Any:
        if type(value) is int and not -limit - 1 <= value <= limit:
            return limit if value > 0 else -limit - 1
        return value
    return clamp


def _text(limit: int) -> Bounder:
    return lambda value: bound_text(value, limit)


def column_bounder(column: sa.Column[Any]) -> Bounder | None:
    """What bounds a value of this column, from its type; None: nothing to bound."""
    t = column.type
    if isinstance(t, sa.JSON):
        return bound_json
    if isinstance(t, sa.String):  # sa.Text is a String without a length
        return _text(t.length if t.length is not None else schema.TEXT_LEN)
    if isinstance(t, sa.BigInteger):
        return _clamp(_INT64)
    if isinstance(t, sa.SmallInteger):
        return _clamp(_INT16)
    if isinstance(t, sa.Integer):
        return _clamp(_INT32)
    return None


def text_limit(column: sa.Column[Any]) -> int | None:
    """The characters a string column holds (as `column_bounder` bounds it); None for others."""
    t = column.type
    if isinstance(t, sa.String) and not isinstance(t, sa.JSON):
        return t.length if t.length is not None else schema.TEXT_LEN
    return None


def table_bounders(table: sa.Table) -> dict[str, Bounder]:
    """{column name: bounder} for every column of `table` that needs one."""
    out = {}
    for column in table.columns:
        if (b := column_bounder(column)) is not None:
            out[column.name] = b
    return out


_BY_TABLE = {t.name: table_bounders(t)
             for md in (schema.metadata, schema.written) for t in md.sorted_tables}


def bound_row(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    """A dict row with every value bounded (the same dict when nothing changed)."""
    bounders = _BY_TABLE[table.name]
    changed: dict[str, Any] = {}
    for name, value in row.items():
        b = bounders.get(name)
        if b is not None and (new := b(value)) is not value:
            changed[name] = new
    return {**row, **changed} if changed else row


Row = TypeVar("Row", MessageRow, RecipientRow)


class TupleBounder(Generic[Row]):
    """Bounds typed rows (the engine's bulk rows: named tuples of a table's columns)."""

    def __init__(self, table: sa.Table, row_type: type[Row]) -> None:
        by_name = _BY_TABLE[table.name]
        self._at = [(i, by_name[c]) for i, c in enumerate(row_type._fields) if c in by_name]
        # String columns and their lengths, checked inline (every field of every row of a
        # replay passes here: two calls per field were a tenth of its engine's time).
        limits = {i: text_limit(table.columns[c]) for i, c in enumerate(row_type._fields)
                  if c in by_name}
        self._texts = [(i, n) for i, n in limits.items() if n is not None]
        self._others = [(i, b) for i, b in self._at if limits[i] is None]
        self._make: Callable[[Iterable[Any]], Row] = row_type._make

    def __call__(self, row: Row) -> Row:
        for i, limit in self._texts:
            v = row[i]
            # A short ASCII string without NUL is stored as it is: bound_text's own rule.
            if type(v) is str and (len(v) > limit or not v.isascii() or "\x00" in v):
                return self._bound(row)
        for i, b in self._others:
            if b(row[i]) is not row[i]:
                return self._bound(row)
        return row

    def _bound(self, row: Row) -> Row:
        new: list[Any] | None = None
        for i, b in self._at:
            value = row[i]
            if (bounded := b(value)) is not value:
                if new is None:
                    new = list(row)
                new[i] = bounded
        return row if new is None else self._make(new)

    def rows(self, rows: list[Row]) -> list[Row]:
        return [self(r) for r in rows]


_MESSAGE_TUPLES = TupleBounder(schema.message_row, MessageRow)
_RECIPIENT_TUPLES = TupleBounder(schema.recipient_row, RecipientRow)
# A counter's sender is interned as a name (a sender key's length).
_COUNTER = {"sender": _BY_TABLE[schema.names.name]["name"],
            **_BY_TABLE[schema.counters.name]}
_USE = _BY_TABLE[schema.rate_use.name]
# SenderDelta attributes and the senders columns they are written to.
_DELTA_COLUMNS = {"key": "key", "cls": "class", "state": "state", "pinned": "pinned",
                  "pinned_by": "pinned_by", "pinned_reason": "pinned_reason",
                  "findings": "findings"}


def bound_delta(delta: SenderDelta) -> SenderDelta:
    bounders = _BY_TABLE[schema.senders.name]
    changed = {}
    for attr, col in _DELTA_COLUMNS.items():
        value = getattr(delta, attr)
        if value is not None and (new := bounders[col](value)) is not value:
            changed[attr] = new
    return dataclasses.replace(delta, **changed) if changed else delta


def bound_override(row: OverrideRow) -> OverrideRow:
    values = dataclasses.asdict(row)
    bounded = bound_row(schema.overrides, values)
    return row if bounded is values else OverrideRow(**bounded)


def bound_batch(batch: Batch) -> Batch:
    """`batch` with every value bounded; the same object when nothing needed it."""
    messages = [bound_row(schema.message_row, r) for r in batch.messages]
    recipients = [bound_row(schema.recipient_row, r) for r in batch.recipients]
    message_rows = _MESSAGE_TUPLES.rows(batch.message_rows)
    recipient_rows = _RECIPIENT_TUPLES.rows(batch.recipient_rows)
    state_changes = [bound_row(schema.state_changes, r) for r in batch.state_changes]
    counters: dict[tuple[str, str, int], float] = {}
    counters_changed = False
    for (sender, name, bucket), amount in batch.counters.items():
        key = (_COUNTER["sender"](sender), _COUNTER["name"](name), _COUNTER["bucket"](bucket))
        counters_changed = counters_changed or key[0] is not sender or key[1] is not name \
            or key[2] is not bucket
        counters[key] = counters.get(key, 0.0) + amount  # keys cut alike add up
    senders: dict[str, SenderDelta] = {}
    senders_changed = False
    for delta in batch.senders.values():
        new = bound_delta(delta)
        senders_changed = senders_changed or new is not delta
        if (mine := senders.get(new.key)) is None:
            senders[new.key] = new
        else:  # two keys cut to one: one row, as for any delta of one key
            merged = dataclasses.replace(mine)  # never change the caller's delta
            merged.absorb(new, 0.0)
            senders[new.key] = merged
    rate_use: dict[tuple[str, str, int], list[int]] = {}
    use_changed = False
    for (sender, mta, bucket), (rcpts, msgs) in batch.rate_use.items():
        key = (_USE["sender"](sender), _USE["mta"](mta), _USE["bucket"](bucket))
        use_changed = use_changed or key[0] is not sender or key[1] is not mta \
            or key[2] is not bucket
        use = rate_use.setdefault(key, [0, 0])
        use[0] += _USE["recipients"](rcpts)
        use[1] += _USE["messages"](msgs)
    if not (counters_changed or senders_changed or use_changed
            or _any_new(messages, batch.messages)
            or _any_new(recipients, batch.recipients)
            or _any_new(message_rows, batch.message_rows)
            or _any_new(recipient_rows, batch.recipient_rows)
            or _any_new(state_changes, batch.state_changes)):
        return batch
    return Batch(
        messages=messages, recipients=recipients,
        counters=counters if counters_changed else batch.counters,
        state_changes=state_changes,
        senders=senders if senders_changed else batch.senders,
        message_rows=message_rows, recipient_rows=recipient_rows,
        rate_use=rate_use if use_changed else batch.rate_use,
    )


def _any_new(bounded: list[Any], original: list[Any]) -> bool:
    return any(a is not b for a, b in zip(bounded, original, strict=True))
