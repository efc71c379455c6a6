"""Traffic and checks for the kill -9 tests and the soak: a log fed while a daemon dies.

A few customers' generated messages as log lines (for a file the feed follows,
or as syslog datagrams), and the store read back afterwards: each message once,
each recipient's outcome once, the counters adding up. The crash tests
(`tests/test_*_crash.py`) and `scripts/soak_kill.py` share them, so "lost" and
"doubled" mean the same in all of them.
"""

from __future__ import annotations

import errno
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from extrusion.scoring.packing import recipients
from extrusion_dev.generate import Client, LogWriter

_CLIENT = re.compile(r": ([0-9A-F]+): client=")
_OUTCOME = re.compile(r": ([0-9A-F]+): to=<([^>]*)>.*status=(sent|bounced)")


@dataclass
class Traffic:
    lines: list[str]
    messages: set[str]  # queue ids of the customers' messages
    outcomes: Counter[tuple[str, str, str]]  # (queue id, recipient, status)
    keys: list[str]  # the customers' sender keys

    @property
    def bounced(self) -> set[tuple[str, str]]:
        return {(q, r) for q, r, status in self.outcomes if status == "bounced"}


def customer_traffic(seed: int, messages: int, seconds: float, *, net: str = "192.0.2",
                     customers: int = 8) -> Traffic:
    """Sorted RFC 3339 log lines of `messages` messages from `customers` customers at
    `net`.x, stamped from now on over `seconds`; some recipients bounce."""
    w = LogWriter(seed, "mta1", rfc3339=True)
    r = random.Random(seed)
    clients = [Client(key=f"ip:{net}.{i + 10}", name=f"c{i}.isp.example",
                      addr=f"{net}.{i + 10}", sasl="", mail_from=f"user{i}@isp.example",
                      service="smtpd", helo=f"c{i}.isp.example") for i in range(customers)]
    t = time.time()
    for _ in range(messages):
        t += seconds / messages
        n = r.randint(1, 3)
        w.message(t, r.choice(clients), [w.recipient() for _ in range(n)],
                  [r.choice(("sent", "sent", "unknown", "spam")) for _ in range(n)])
    w.lines.sort()
    lines = [text for _t, _s, text in w.lines]
    # A customer's message has a client line; the bounce notices the MTA makes do not.
    queued = {m.group(1) for x in lines if (m := _CLIENT.search(x))}
    outcomes = Counter((m.group(1), m.group(2), m.group(3)) for x in lines
                       if (m := _OUTCOME.search(x)) and m.group(1) in queued)
    return Traffic(lines, queued, outcomes, [c.key for c in clients])


class SyslogSender(threading.Thread):
    """Sends each line as an RFC 3164 datagram, in order, over `seconds`; waits out a
    daemon that is not there (refused) and pauses on request (`go` cleared; `idle` is
    set while paused)."""

    def __init__(self, sock: Path, lines: list[str], seconds: float) -> None:
        super().__init__(daemon=True)
        self.sock, self.lines, self.pause = str(sock), lines, seconds / max(1, len(lines))
        self.go, self.idle, self.done = threading.Event(), threading.Event(), threading.Event()
        self.go.set()

    def run(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for text in self.lines:
                if not self.go.is_set():
                    self.idle.set()
                    self.go.wait()
                    self.idle.clear()
                self._send(s, b"<22>" + text.encode())
                time.sleep(self.pause)
        self.done.set()

    def _send(self, s: socket.socket, data: bytes) -> None:
        while True:
            try:
                s.sendto(data, self.sock)
                return
            except OSError as exc:
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    raise
                time.sleep(0.02)  # the daemon is down: its socket comes back


def journal_settled(journal: Path) -> None:
    """Wait until the daemon has taken every datagram off its socket into the journal."""
    last, stable = -1, 0
    while stable < 3:
        size = journal.stat().st_size if journal.exists() else 0
        stable, last = (stable + 1 if size == last else 0), size
        time.sleep(0.05)


def count(url: str, sql: str) -> int:
    """One integer from the store; 0 while its tables are not created yet."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    except sa.exc.DBAPIError:
        return 0
    finally:
        eng.dispose()


def reached(url: str) -> int:
    """How far into its log the feed has checkpointed (bytes)."""
    return count(url, "SELECT coalesce(max(reached), 0) FROM checkpoints")


def caught_up(url: str, size: Callable[[], int], seconds: float) -> bool:
    """Wait up to `seconds` for the checkpoint to reach the end of the log."""
    deadline = time.monotonic() + seconds
    while reached(url) != size() and time.monotonic() < deadline:
        time.sleep(0.2)
    return reached(url) == size()


@dataclass
class Stored:
    messages: Counter[str]  # queue id -> rows
    outcomes: Counter[tuple[str, str, str]]  # (queue id, recipient, status) -> rows
    counters: dict[str, int]  # counter name -> sum over the customers' keys


def stored(url: str, mta: str, keys: list[str]) -> Stored:
    """What the store holds of `mta`'s messages and of the customers' outcomes/counters."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT m.queue_id, m.time, m.rcpts, n.name FROM messages m "
                "JOIN names n ON n.id = m.mta_id")).all()
            # A message's recipients are packed in its row, each with its last outcome.
            messages = Counter(q for q, _t, _r, m in rows if m == mta)
            outcomes = Counter((q, r.recipient, r.status) for q, t, text, _m in rows
                               for r in recipients(text, float(t))
                               if r.status in ("sent", "bounced"))
            counters = {name: int(value) for name, value in conn.execute(sa.text(
                "SELECT c.name, sum(c.value) FROM counters c JOIN names n "
                "ON n.id = c.sender_id WHERE n.name IN :k GROUP BY c.name"
            ).bindparams(sa.bindparam("k", expanding=True)), {"k": sorted(keys)})}
    finally:
        eng.dispose()
    return Stored(messages, outcomes, counters)


def lost_and_doubled(sent: Traffic, got: Stored) -> tuple[dict[str, int], dict[str, int]]:
    """Per kind (messages, outcomes, each counter): how many are missing, how many extra."""
    ours = {q: n for q, n in got.messages.items() if q in sent.messages}
    mine = {k: n for k, n in got.outcomes.items() if k[0] in sent.messages}
    lost = {"messages": len(sent.messages - set(ours)),
            "outcomes": sum(1 for k in sent.outcomes if k not in mine)}
    doubled = {"messages": sum(n - 1 for n in ours.values()),
               "outcomes": sum(max(0, n - sent.outcomes[k]) for k, n in mine.items())}
    want = {"messages": len(sent.messages), "recipients": sum(sent.outcomes.values()),
            "sent": sum(n for k, n in sent.outcomes.items() if k[2] == "sent"),
            "bounced": sum(n for k, n in sent.outcomes.items() if k[2] == "bounced")}
    for name, n in want.items():
        have = got.counters.get(name, 0)
        lost[f"counter {name}"] = max(0, n - have)
        doubled[f"counter {name}"] = max(0, have - n)
    return lost, doubled


class Appender(threading.Thread):
    """Appends `lines` to `log` in chunks over `seconds` of writing, as a busy MTA's
    syslog daemon would; pauses between chunks while `go` is cleared."""

    def __init__(self, log: Path, lines: list[str], seconds: float) -> None:
        super().__init__(daemon=True)
        self.log, self.lines = log, lines
        self.per_chunk = max(1, len(lines) // int(seconds / 0.05))
        self.go = threading.Event()
        self.go.set()

    def run(self) -> None:
        with open(self.log, "a") as f:
            for i in range(0, len(self.lines), self.per_chunk):
                self.go.wait()
                f.write("".join(x + "\n" for x in self.lines[i:i + self.per_chunk]))
                f.flush()
                time.sleep(0.05)


def appender(log: Path, lines: list[str], seconds: float) -> Appender:
    """An Appender, not started."""
    return Appender(log, lines, seconds)
