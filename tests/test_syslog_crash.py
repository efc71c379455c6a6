"""`kill -9` during a steady syslog feed loses nothing and counts nothing twice.

The syslog twin of test_feed_crash.py: `extrusion policyd` receives realistic
Postfix lines as datagrams on a unix datagram socket (a sender there waits
while the daemon is away instead of losing datagrams, as UDP would), journals
them (maillog/journal.py) and feeds the journal crash-safely. It is killed with
SIGKILL five times while the feed works through the journal and restarted each
time. At the end the store holds every message and every bounced recipient
exactly once, with the "bounced" counters summing to the bounces sent, on
SQLite and PostgreSQL. Before each kill the sender pauses until the journal
stops growing: datagrams still in the kernel's socket buffer when a process
dies are lost by any receiver (documented), and the kill should hit the feed,
not that buffer.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from .conftest import free_port
from .helpers import toml_text
from .test_feed_crash import KILLS, MTA, WRITE_SECONDS, _count, _log_lines, _reached, _start

CATCH_UP_SECONDS = 60.0


def _config(tmp: Path, url: str, sock: Path) -> Path:
    path = tmp / "extrusion.toml"
    path.write_text(toml_text({
        "general": {"hostname": MTA, "log_level": "info"},
        "store": {"url": url, "spool_dir": str(tmp / "spool")},
        "policyd": {"listen": f"tcp:{free_port()}:interface=127.0.0.1",
                    "hold_queued_mail": False},
        "api": {"listen": f"tcp:{free_port()}:interface=127.0.0.1"},
        "milter": {"enabled": False},
        "maillog": {"source": "syslog", "syslog_listen": f"unix:{sock}", "poll_seconds": 0.2},
    }))
    return path


class Sender(threading.Thread):
    """Sends each line as an RFC 3164 datagram with an RFC 3339 stamp, in order; waits out
    a daemon that is not there (refused) and pauses on request."""

    def __init__(self, sock: Path, lines: list[str]) -> None:
        super().__init__(daemon=True)
        self.sock = str(sock)
        self.lines = lines
        self.go = threading.Event()
        self.go.set()
        self.idle = threading.Event()  # set while paused
        self.done = threading.Event()

    def run(self) -> None:
        pause = WRITE_SECONDS / len(self.lines)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for text in self.lines:
                if not self.go.is_set():
                    self.idle.set()
                    self.go.wait()
                    self.idle.clear()
                self._send(s, b"<22>" + text.encode())
                time.sleep(pause)
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


def _journal_settled(journal: Path) -> None:
    """Wait until the daemon has taken every datagram off its socket into the journal."""
    last, stable = -1, 0
    while stable < 3:
        size = journal.stat().st_size if journal.exists() else 0
        stable = stable + 1 if size == last else 0
        last = size
        time.sleep(0.05)


def test_kill_9_during_a_steady_syslog_feed_loses_and_doubles_nothing(
        store_url: str, tmp_path: Path) -> None:
    lines, messages, bounced = _log_lines(seed=15)
    sock = tmp_path / "syslog.sock"
    journal = tmp_path / "spool" / "syslog-journal" / "journal"
    config = _config(tmp_path, store_url, sock)
    sender = Sender(sock, lines)
    sender.start()
    r = random.Random(6)
    stored_at_kill: list[int] = []
    for n in range(KILLS):
        proc = _start(config, tmp_path, n)
        time.sleep(r.uniform(2.5, 4.5))
        sender.go.clear()
        sender.idle.wait(timeout=10)
        _journal_settled(journal)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        sender.go.set()
        stored_at_kill.append(_count(store_url, "SELECT count(*) FROM messages"))
    assert not sender.done.is_set()
    assert len(set(stored_at_kill)) >= 3, stored_at_kill

    proc = _start(config, tmp_path, KILLS)
    try:
        assert sender.done.wait(timeout=WRITE_SECONDS * 3)
        _journal_settled(journal)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while _reached(store_url) != os.path.getsize(journal) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _reached(store_url) == os.path.getsize(journal)
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop finishes the open joins
        assert proc.wait(timeout=30) == 0

    # Every datagram sent was journaled once (none dropped, none lost at a kill).
    assert len(journal.read_text().splitlines()) == len(lines)
    eng = sa.create_engine(store_url)
    try:
        with eng.connect() as conn:
            stored = Counter(q for (q,) in conn.execute(
                sa.text("SELECT queue_id FROM messages WHERE mta = :m"), {"m": MTA}))
            outcomes = Counter((q, rcpt) for q, rcpt in conn.execute(sa.text(
                "SELECT queue_id, recipient FROM recipients WHERE status = 'bounced'")))
            counted = conn.execute(sa.text(
                "SELECT coalesce(sum(value), 0) FROM counters WHERE name = 'bounced'")).scalar()
    finally:
        eng.dispose()
    assert set(stored) == messages and set(stored.values()) == {1}
    assert set(outcomes) == bounced
    assert {k: n for k, n in outcomes.items() if n != 1} == {}
    assert counted == len(bounced)
