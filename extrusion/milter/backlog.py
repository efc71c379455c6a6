"""Events the engine could not take yet, kept in order until it can.

In memory while the milter runs (bounded: a broken engine must not eat the
machine's memory), saved to a JSON-lines file in the spool directory when
the milter stops with events still waiting, and loaded back at the next
start, so a restart loses nothing either.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from extrusion.scoring.events import Connection, Headers, Submission

log = logging.getLogger("extrusion.milter")

Event = Connection | Submission

# Held in memory at most; a day of a busy smarthost's submissions while the engine is broken.
MAX_EVENTS = 200_000
FILE_NAME = "milter-backlog.jsonl"


class Backlog:
    """A bounded FIFO of events, safe to use from several threads."""

    def __init__(self, path: Path | None = None, max_events: int = MAX_EVENTS) -> None:
        self.path = path
        self.max_events = max_events
        self.dropped = 0
        self._events: collections.deque[Event] = collections.deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._events)

    def add(self, event: Event) -> None:
        with self._lock:
            if len(self._events) >= self.max_events:
                self.dropped += 1
                if self.dropped == 1:
                    log.error("event backlog full (%d events): dropping new events",
                              self.max_events)
                return
            self._events.append(event)

    def peek(self) -> Event | None:
        with self._lock:
            return self._events[0] if self._events else None

    def pop_first(self, event: Event) -> None:
        """Remove `event` if it is still the oldest (it was just delivered)."""
        with self._lock:
            if self._events and self._events[0] is event:
                self._events.popleft()

    def save(self) -> None:
        """Write waiting events to the file (replacing it); nothing to write removes it."""
        if self.path is None:
            if self._events:
                log.error("%d events could not be recorded and there is no spool to keep them",
                          len(self._events))
            return
        with self._lock:
            events = list(self._events)
        if not events:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for event in events:
                out.write(json.dumps(_to_json(event), ensure_ascii=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)
        log.warning("%d events the engine could not take are kept in %s", len(events), self.path)

    def load(self) -> int:
        """Take the events a previous run saved; the file is removed once they are in memory."""
        if self.path is None or not self.path.exists():
            return 0
        loaded = 0
        with self.path.open(encoding="utf-8") as src:
            for n, line in enumerate(src, 1):
                try:
                    self.add(_from_json(json.loads(line)))
                    loaded += 1
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("%s:%d: unreadable event skipped (%s)", self.path, n, exc)
        self.path.unlink()
        return loaded


def _to_json(event: Event) -> dict[str, Any]:
    return {"type": type(event).__name__, **dataclasses.asdict(event)}


def _from_json(data: dict[str, Any]) -> Event:
    kind = data.pop("type")
    for key in ("helos", "recipients", "helo_confirmed"):
        if key in data:
            data[key] = tuple(data[key])
    if kind == "Connection":
        return Connection(**data)
    if kind == "Submission":
        data["headers"] = Headers(**data["headers"])
        return Submission(**data)
    raise ValueError(f"unknown event type {kind!r}")
