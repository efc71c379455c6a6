"""The parsing half of a two-process replay: log files in, events out on stdout.

`extrusion replay` runs this as a child process (`python -m
extrusion.replay.reader LOG...`, its pickled `WorkerSettings` on standard
input) so that reading, parsing
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from itertools import islice
from typing import IO, Any, Protocol

from extrusion.config import Customer
from extrusion.maillog.feed import LogFeed
from extrusion.maillog.join import NO_HEADERS, JoinSettings
from extrusion.maillog.programs import Format
from extrusion.maillog.timestamps import log_zone
from extrusion.scoring.events import ClientEvidence, Outcome, Refused, Seen, Status, Submission

FLUSH = ("F",)
LogEvent = Submission | Outcome | Refused | ClientEvidence
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

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled to the replay's reader. Compiled (mypyc), a frozen dataclass cannot
        # be restored field by field: it is made again from its fields instead.
        return (WorkerSettings, tuple(getattr(self, f.name) for f in fields(self)))


def encode_submission(now: float, s: Submission) -> tuple[Any, ...]:
    # Headers never come from a log: only the fields the feed fills travel.
    return ("S", now, s.time, s.sender, s.queue_id, s.envelope_from, s.recipients, s.size,
            s.mta, s.client_addr, s.client_name, s.helos, s.message_id)


def encode_outcome(now: float, o: Outcome) -> tuple[Any, ...]:
    # The status's value by dictionary: `Status.value` is a Python-level property (3.11),
    # dearer than the rest of this tuple, once per outcome.
    return ("O", now, o.time, o.queue_id, o.recipient, _VALUE[o.status], o.dsn, o.reply,
            o.sender, o.envelope_from, o.mta, o.relay, o.client_name)


def encode_refused(now: float, r: Refused) -> tuple[Any, ...]:
    return ("R", now, r.time, r.sender, r.recipient)


def encode_evidence(now: float, e: ClientEvidence) -> tuple[Any, ...]:
    return ("E", now, e.time, e.sender, e.client_addr, e.kind.value, e.client_name, e.helos,
            e.envelope_from, e.recipients, e.detail, e.queue_id, e.mta, e.client_evidence)


def decode_submission(item: tuple[Any, ...]) -> Submission:
    # Run for every event of a replay, so positional (the tuple is in field order) and
    # one shared (immutable) empty Headers instead of a new one per submission.
    (_k, _now, t, sender, qid, env, rcpts, size, mta, addr, name, helos, mid) = item
    return Submission(t, sender, qid, env, rcpts, size, mta, addr, name, helos, NO_HEADERS,
                      mid)


def decode_outcome(item: tuple[Any, ...]) -> Outcome:
    # The status by dictionary instead of Status(); the other fields in field order.
    (_k, _now, t, qid, rcpt, status, dsn, reply, sender, env, mta, relay, name) = item
    return Outcome(t, qid, rcpt, _STATUS[status], dsn, reply, sender, env, mta, relay, name)


def decode_refused(item: tuple[Any, ...]) -> Refused:
    return Refused(item[2], item[3], item[4])


def decode_evidence(item: tuple[Any, ...]) -> ClientEvidence:
    (_k, _now, t, sender, addr, kind, name, helos, env, rcpts, detail, qid, mta, ce) = item
    return ClientEvidence(t, sender, addr, Seen(kind), name, helos, env, rcpts, detail, qid,
                          mta, ce)


def decode(item: tuple[Any, ...]) -> LogEvent:
    """The event of an encoded item (the engine's side dispatches by kind instead)."""
    return _DECODE[item[0]](item)


_STATUS = {s.value: s for s in Status}
_VALUE = {s: s.value for s in Status}  # a plain str, as `.value` gives it
_DECODE: dict[str, Callable[[tuple[Any, ...]], LogEvent]] = {
    "S": decode_submission, "O": decode_outcome, "R": decode_refused, "E": decode_evidence,
}


class _Clock(Protocol):
    now: float  # the latest log time read


class _NoClock:
    now = 0.0


class _Encoder:
    """Stands in for the engine in the worker: keys senders as the engine would."""

    def __init__(self, customers: tuple[Customer, ...]) -> None:
        from extrusion.scoring.overrides import SenderMap

        self.map = SenderMap(customers)
        self.items: list[tuple[Any, ...]] = []
        # The feed's joiner once there is one: its `now` (an attribute, read directly,
        # once per event) is the event's clock.
        self.clock: _Clock = _NoClock()

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        return self.map.key(client_addr, sasl_user)

    def submission(self, event: Submission) -> None:
        self.items.append(encode_submission(self.clock.now, event))

    def outcome(self, event: Outcome) -> None:
        self.items.append(encode_outcome(self.clock.now, event))

    def submission_fields(self, t: float, sender: str, qid: str, envelope_from: str,
                          recipients: tuple[str, ...], size: int, mta: str, client_addr: str,
                          client_name: str, helos: tuple[str, ...], message_id: str) -> None:
        """`submission()` of the `Submission` of these fields, without making it
        (`Emitter.submission_now`)."""
        self.items.append(("S", self.clock.now, t, sender, qid, envelope_from, recipients,
                           size, mta, client_addr, client_name, helos, message_id))

    def outcome_fields(self, t: float, qid: str, rcpt: str, status: Status, dsn: str,
                       reply: str, sender: str, envelope_from: str | None, mta: str,
                       relay: str) -> None:
        """`outcome()` of the `Outcome` of these fields, without making it (the joiner's
        common outcome; `Emitter.outcome_now`)."""
        self.items.append(("O", self.clock.now, t, qid, rcpt, _VALUE[status], dsn, reply,
                           sender, envelope_from, mta, relay, ""))

    def refused(self, event: Refused) -> None:
        self.items.append(encode_refused(self.clock.now, event))

    def evidence(self, event: ClientEvidence) -> None:
        self.items.append(encode_evidence(self.clock.now, event))


def work(settings: WorkerSettings, lines: Iterable[str], out: IO[bytes],
         errors: Callable[[], str], position: Callable[[], int] = lambda: 0) -> None:
    """Parse `lines` and write the message stream to `out`; `position()` is the bytes of
    the input files read so far (for the progress line)."""
    enc = _Encoder(settings.customers)
    feed = LogFeed(enc, fmt=settings.fmt, settings=settings.join,
                   reference_time=settings.reference_time, tz=log_zone(settings.timezone),
                   guard=False)
    enc.clock = feed.joiner
    n = 0
    every = settings.flush_every_lines
    lines = iter(lines)
    while True:
        # A batch's lines through the feed at once: its loop handles the common line
        # without a call per line and per step.
        batch = list(islice(lines, BATCH_LINES))
        feed.lines(batch)
        n += len(batch)
        if len(batch) < BATCH_LINES:
            break
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

    settings = pickle.load(sys.stdin.buffer)
    assert isinstance(settings, WorkerSettings)
    error: list[str] = []
    position = Position(argv)

    # The reader's generator straight in: no second generator around it per line.
    work(settings, read_lines(argv, error, position), sys.stdout.buffer,
         lambda: error[0] if error else "", position.bytes)
    return 0
