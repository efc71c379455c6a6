"""The parsing half of a two-process replay: log files in, events out on stdout.

`extrusion replay` runs this as a child process (`python -m
extrusion.replay.worker SETTINGS LOG...`) so that reading, parsing
and joining the log use one core while the engine and its store use the
other. It writes a stream of pickled messages:

- `("batch", lines_read, bytes_read, items)` where each item is an encoded event
  `("S"|"O"|"R", now, fields...)` (submission, outcome, refusal of a rate-limited
  recipient), or `FLUSH` where the engine must write its
  queue (after the same lines as a one-process replay flushes, so both give
  identical results);
- `("end", lines_read, FeedStats, error)` once, last.

Events travel as plain tuples: pickling frozen dataclasses costs ten times
more. `now` is the log time when the event was made, the engine's clock.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from extrusion.config import Customer
from extrusion.maillog.feed import Format, LogFeed
from extrusion.maillog.join import NO_HEADERS, JoinSettings
from extrusion.maillog.timestamps import log_zone
from extrusion.scoring.events import ClientEvidence, Outcome, Refused, Seen, Status, Submission

FLUSH = ("F",)
BATCH_LINES = 4096
PICKLE_PROTOCOL = 5


@dataclass(frozen=True)
class WorkerSettings:
    fmt: Format
    join: JoinSettings
    timezone: str
    reference_time: float
    customers: tuple[Customer, ...]
    flush_every_lines: int


def encode_submission(now: float, s: Submission) -> tuple[Any, ...]:
    # Headers never come from a log: only the fields the feed fills travel.
    return ("S", now, s.time, s.sender, s.queue_id, s.envelope_from, s.recipients, s.size,
            s.mta, s.client_addr, s.client_name, s.helos, s.message_id)


def encode_outcome(now: float, o: Outcome) -> tuple[Any, ...]:
    return ("O", now, o.time, o.queue_id, o.recipient, o.status.value, o.dsn, o.reply,
            o.sender, o.envelope_from, o.mta, o.relay, o.client_name)


def encode_refused(now: float, r: Refused) -> tuple[Any, ...]:
    return ("R", now, r.time, r.sender, r.recipient)


def encode_evidence(now: float, e: ClientEvidence) -> tuple[Any, ...]:
    return ("E", now, e.time, e.sender, e.client_addr, e.kind.value, e.client_name, e.helos,
            e.envelope_from, e.recipients, e.detail, e.queue_id, e.mta, e.client_evidence)


def decode(item: tuple[Any, ...]) -> Submission | Outcome | Refused | ClientEvidence:
    # Run for every event of a replay: one shared (immutable) empty Headers instead of
    # a new one per submission, and the status by dictionary instead of Status().
    if item[0] == "R":
        return Refused(item[2], item[3], item[4])
    if item[0] == "E":
        (_k, _now, t, sender, addr, kind, name, helos, env, rcpts, detail, qid, mta, ce) = item
        return ClientEvidence(time=t, sender=sender, client_addr=addr, kind=Seen(kind),
                              client_name=name, helos=helos, envelope_from=env,
                              recipients=rcpts, detail=detail, queue_id=qid, mta=mta,
                              client_evidence=ce)
    if item[0] == "S":
        (_k, _now, t, sender, qid, env, rcpts, size, mta, addr, name, helos, mid) = item
        return Submission(time=t, sender=sender, queue_id=qid, envelope_from=env,
                          recipients=rcpts, size=size, mta=mta, client_addr=addr,
                          client_name=name, helos=helos, headers=NO_HEADERS, message_id=mid)
    (_k, _now, t, qid, rcpt, status, dsn, reply, sender, env, mta, relay, name) = item
    return Outcome(time=t, queue_id=qid, recipient=rcpt, status=_STATUS[status], dsn=dsn,
                   reply=reply, sender=sender, envelope_from=env, mta=mta, relay=relay,
                   client_name=name)


_STATUS = {s.value: s for s in Status}


class _Encoder:
    """Stands in for the engine in the worker: keys senders as the engine would."""

    def __init__(self, customers: tuple[Customer, ...]) -> None:
        from extrusion.scoring.overrides import SenderMap

        self.map = SenderMap(customers)
        self.items: list[tuple[Any, ...]] = []
        self.now: Callable[[], float] = lambda: 0.0

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        return self.map.key(client_addr, sasl_user)

    def submission(self, event: Submission) -> None:
        self.items.append(encode_submission(self.now(), event))

    def outcome(self, event: Outcome) -> None:
        self.items.append(encode_outcome(self.now(), event))

    def refused(self, event: Refused) -> None:
        self.items.append(encode_refused(self.now(), event))

    def evidence(self, event: ClientEvidence) -> None:
        self.items.append(encode_evidence(self.now(), event))


def work(settings: WorkerSettings, lines: Iterable[str], out: IO[bytes],
         errors: Callable[[], str], position: Callable[[], int] = lambda: 0) -> None:
    """Parse `lines` and write the message stream to `out`; `position()` is the bytes of
    the input files read so far (for the progress line)."""
    enc = _Encoder(settings.customers)
    feed = LogFeed(enc, fmt=settings.fmt, settings=settings.join,
                   reference_time=settings.reference_time, tz=log_zone(settings.timezone),
                   guard=False)
    enc.now = lambda: feed.joiner.now
    n = 0
    every = settings.flush_every_lines
    for line in lines:
        feed.line(line)
        n += 1
        if not n % BATCH_LINES:
            if not n % every:
                enc.items.append(FLUSH)
            pickle.dump(("batch", n, position(), enc.items), out, PICKLE_PROTOCOL)
            enc.items = []
    feed.finish()
    pickle.dump(("batch", n, position(), enc.items), out, PICKLE_PROTOCOL)
    pickle.dump(("end", n, feed.stats, errors()), out, PICKLE_PROTOCOL)
    out.flush()


def main(argv: list[str]) -> int:
    from extrusion.replay.input import Position, read_lines

    settings = pickle.loads(Path(argv[0]).read_bytes())
    assert isinstance(settings, WorkerSettings)
    error: list[str] = []
    position = Position(argv[1:])

    def lines() -> Iterator[str]:
        yield from read_lines(argv[1:], error, position)

    work(settings, lines(), sys.stdout.buffer, lambda: error[0] if error else "",
         position.bytes)
    return 0


if __name__ == "__main__":
    # Run the module's own copy so unpickled settings are of the class it checks.
    from extrusion.replay.worker import main as _main

    sys.exit(_main(sys.argv[1:]))
