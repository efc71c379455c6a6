"""`kill -9` during a steady log feed loses nothing and counts nothing twice.

`extrusion policyd` follows a log that a writer thread appends realistic
Postfix lines to; it is killed with SIGKILL five times at random points and
restarted each time. At the end the store must hold every message exactly
once and every bounced recipient exactly once, with the "bounced" counters
summing to the bounces written (maillog/recovery.py), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from extrusion_dev.generate import Client, LogWriter

from .conftest import free_port
from .helpers import toml_text

EXE = str(Path(sys.executable).parent / "extrusion")
MTA = "mta1.test"
MESSAGES = 500
KILLS = 5
WRITE_SECONDS = 30.0
CATCH_UP_SECONDS = 30.0
_CLIENT = re.compile(r": ([0-9A-F]+): client=")
_BOUNCED = re.compile(r": ([0-9A-F]+): to=<([^>]*)>.*status=bounced")


def _log_lines(seed: int) -> tuple[list[str], set[str], set[tuple[str, str]]]:
    """Sorted log lines of MESSAGES messages from a few customers, stamped from now on;
    with the queue ids of the customers' messages and their bounced (queue id, recipient)."""
    w = LogWriter(seed, "mta1", rfc3339=True)
    r = random.Random(seed)
    clients = [Client(key=f"ip:192.0.2.{i + 10}", name=f"c{i}.isp.example",
                      addr=f"192.0.2.{i + 10}", sasl="",
                      mail_from=f"user{i}@isp.example", service="smtpd", helo=f"c{i}.isp.example")
               for i in range(8)]
    t = time.time()
    for _ in range(MESSAGES):
        t += WRITE_SECONDS / MESSAGES
        n = r.randint(1, 3)
        w.message(t, r.choice(clients), [w.recipient() for _ in range(n)],
                  [r.choice(("sent", "sent", "unknown", "spam")) for _ in range(n)])
    w.lines.sort()
    lines = [text for _t, _s, text in w.lines]
    # A customer's message has a client line; the bounce notices the MTA makes do not.
    messages = {m.group(1) for x in lines if (m := _CLIENT.search(x))}
    bounced = {(m.group(1), m.group(2)) for x in lines if (m := _BOUNCED.search(x))}
    return lines, messages, bounced


def _config(tmp: Path, url: str, log: Path) -> Path:
    path = tmp / "extrusion.toml"
    path.write_text(toml_text({
        "general": {"hostname": MTA, "log_level": "info"},
        "store": {"url": url, "spool_dir": str(tmp / "spool")},
        "policyd": {"listen": f"tcp:{free_port()}:interface=127.0.0.1",
                    "hold_queued_mail": False},
        "api": {"listen": f"tcp:{free_port()}:interface=127.0.0.1"},
        "milter": {"enabled": False},
        "maillog": {"source": "file", "path": str(log), "start_at": "beginning",
                    "poll_seconds": 0.2},
    }))
    return path


def _start(config: Path, tmp: Path, n: int) -> subprocess.Popen[bytes]:
    with open(tmp / f"stderr-{n}.log", "wb") as err:
        return subprocess.Popen([EXE, "policyd", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err)


def _count(url: str, sql: str) -> int:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    except sa.exc.DBAPIError:
        return 0  # not created yet
    finally:
        eng.dispose()


def _reached(url: str) -> int:
    return _count(url, "SELECT coalesce(max(reached), 0) FROM checkpoints")


def test_kill_9_during_a_steady_feed_loses_and_doubles_nothing(
        store_url: str, tmp_path: Path) -> None:
    lines, messages, bounced = _log_lines(seed=14)
    assert len(messages) == MESSAGES and len(bounced) > 150
    log = tmp_path / "mail.log"
    log.touch()
    config = _config(tmp_path, store_url, log)

    written = threading.Event()

    def write() -> None:
        per_chunk = max(1, len(lines) // int(WRITE_SECONDS / 0.05))
        with open(log, "a") as f:
            for i in range(0, len(lines), per_chunk):
                f.write("".join(x + "\n" for x in lines[i:i + per_chunk]))
                f.flush()
                time.sleep(0.05)
        written.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    r = random.Random(5)
    stored_at_kill: list[int] = []
    for n in range(KILLS):
        proc = _start(config, tmp_path, n)
        time.sleep(r.uniform(2.5, 4.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        stored_at_kill.append(_count(store_url, "SELECT count(*) FROM messages"))
    # The kills fell in the middle of the feed, after progress.
    assert not written.is_set()
    assert len(set(stored_at_kill)) >= 3, stored_at_kill

    proc = _start(config, tmp_path, KILLS)
    try:
        written.wait(timeout=WRITE_SECONDS * 3)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        # Read to the end: the checkpoint after the last poll says so exactly.
        while _reached(store_url) != os.path.getsize(log) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _reached(store_url) == os.path.getsize(log)
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop finishes the open joins
        assert proc.wait(timeout=30) == 0

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

