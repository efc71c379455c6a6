"""A batch the store refuses: write it in parts, set the refused rows aside.

A refusal (`StoreRefused`: a constraint, a value the database cannot hold)
would come back on every retry, and a spooled batch is replayed before any
newer one, so one bad row used to stop every write for good. Instead the
batch is cut into units — a message with its recipients' rows, one counter,
one audit entry, one sender — and bisected until each refused unit is one
row; those rows go to `quarantine.jsonl` in the spool directory (one JSON
object a line, for an operator to read or load by hand) with one log line,
and everything else is written. The file is bounded: past `MAX_BYTES` it is
renamed `quarantine.jsonl.1` (replacing the previous one) and started anew.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from extrusion.scoring.bounds import bound_batch
from extrusion.scoring.rows import Batch, SenderRow
from extrusion.scoring.store import StoreRefused, StoreUnavailable

log = logging.getLogger("extrusion.scoring")

FILE_NAME = "quarantine.jsonl"
MAX_BYTES = 16 * 1024 * 1024  # per file; with the one rotated copy, at most twice that
MAX_REPR = 64 * 1024  # characters of a row JSON cannot hold


class PartlyWritten(StoreUnavailable):
    """The store went away while a refused batch was being written in parts:
    `remainder` is what was not written yet (spool that, not the whole batch)."""

    def __init__(self, message: str, remainder: Batch) -> None:
        super().__init__(message)
        self.remainder = remainder


class Quarantine:
    """The refused rows' file in the spool directory, and how many went there."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = MAX_BYTES) -> None:
        self.path = Path(directory) / FILE_NAME
        self.max_bytes = max_bytes
        self.rows = 0  # set aside by this process (the engine's metric)

    def add(self, unit: Batch, reason: str) -> None:
        """Keep one refused row; never raises (the row is lost only if the disk is)."""
        self.rows += 1
        try:
            row: Any = json.loads(bound_batch(unit).to_json())
        except (TypeError, ValueError):  # a value JSON cannot hold: keep what it looked like
            row = {"repr": repr(unit)[:MAX_REPR]}
        line = json.dumps({"time": time.time(), "reason": reason, "batch": row},
                          separators=(",", ":")) + "\n"
        data = line.encode("utf-8", "backslashreplace")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                if self.path.stat().st_size + len(data) > self.max_bytes:
                    os.replace(self.path, self.path.with_name(FILE_NAME + ".1"))
            except FileNotFoundError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data[: self.max_bytes])
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("store refused a row (%s) and it cannot be kept in %s: %s",
                      reason, self.path, exc.strerror or exc)
            return
        log.error("store refused a row (%s); set aside in %s", reason, self.path)


def write_in_parts(write: Callable[[Batch], list[SenderRow]], batch: Batch,
                   quarantine: Quarantine) -> list[SenderRow]:
    """`write(batch)`; if the store refuses it, every part it takes, the rest quarantined.

    Raises StoreUnavailable as `write` does when nothing was written, PartlyWritten
    when some parts were.
    """
    try:
        return write(batch)
    except StoreRefused as exc:
        log.warning("%s; writing the batch of %d in parts", exc, len(batch))
    rows: list[SenderRow] = []
    todo = _halves(units(batch))  # front first: the batch's own order
    written = False
    while todo:
        part = todo.pop(0)
        try:
            rows.extend(write(join(part)))
            written = True
        except StoreRefused as exc:
            if len(part) == 1 and len(rows_of(part[0])) == 1:
                quarantine.add(part[0], str(exc))
            else:
                todo[:0] = _halves(part)
        except StoreUnavailable as exc:
            if not written:
                raise
            remainder = join([u for p in [part, *todo] for u in p])
            raise PartlyWritten(str(exc), remainder) from exc
    return rows


def _halves(part: list[Batch]) -> list[list[Batch]]:
    """A refused part in two; a lone unit (a message refused with its recipients)
    row by row."""
    if len(part) == 1:
        part = rows_of(part[0])
    mid = len(part) // 2
    return [p for p in (part[:mid], part[mid:]) if p]


def units(batch: Batch) -> list[Batch]:
    """The batch cut where the store needs nothing across the cut: a message's rows
    stay together (a repeated report's recipients are matched against its message)."""
    by_message: dict[tuple[str, str], Batch] = {}

    def message(mta: Any, queue_id: Any) -> Batch:
        return by_message.setdefault((mta, queue_id), Batch())

    for m in batch.messages:
        message(m.get("mta", ""), m.get("queue_id")).messages.append(m)
    for r in batch.message_rows:
        message(r.mta, r.queue_id).message_rows.append(r)
    for rd in batch.recipients:
        message(rd.get("mta", ""), rd.get("queue_id")).recipients.append(rd)
    for rr in batch.recipient_rows:
        message(rr.mta, rr.queue_id).recipient_rows.append(rr)
    out = list(by_message.values())
    out += [Batch(counters={k: v}) for k, v in batch.counters.items()]
    out += [Batch(state_changes=[c]) for c in batch.state_changes]
    out += [Batch(senders={k: d}) for k, d in batch.senders.items()]
    out += [Batch(rate_use={k: list(v)}) for k, v in batch.rate_use.items()]
    return out


def rows_of(unit: Batch) -> list[Batch]:
    """A message's unit as one batch per row, its message first."""
    if len(unit) <= 1:
        return [unit]
    return [*(Batch(messages=[m]) for m in unit.messages),
            *(Batch(message_rows=[r]) for r in unit.message_rows),
            *(Batch(recipients=[r]) for r in unit.recipients),
            *(Batch(recipient_rows=[r]) for r in unit.recipient_rows)]


def join(parts: list[Batch]) -> Batch:
    """Units back into one batch (their keys are disjoint: nothing to add up)."""
    out = Batch()
    for p in parts:
        out.messages += p.messages
        out.recipients += p.recipients
        out.message_rows += p.message_rows
        out.recipient_rows += p.recipient_rows
        out.counters.update(p.counters)
        out.rate_use.update({k: list(v) for k, v in p.rate_use.items()})
        out.state_changes += p.state_changes
        out.senders.update({k: dataclasses.replace(d) for k, d in p.senders.items()})
    return out
