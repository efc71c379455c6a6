"""`kill -9` during a steady log feed loses nothing and counts nothing twice.

`extrusion policyd` follows a log that a writer thread appends realistic
Postfix lines to; it is killed with SIGKILL five times at random points and
restarted each time. At the end the store must hold every message exactly
once and every recipient's outcome exactly once, with the counters (messages,
recipients, sent, bounced) adding up to what was written (maillog/recovery.py),
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from extrusion_dev.crashfeed import (
    appender,
    caught_up,
    count,
    customer_traffic,
    lost_and_doubled,
    stored,
)

from .conftest import free_port
from .helpers import toml_text

EXE = str(Path(sys.executable).parent / "extrusion")
MTA = "mta1.test"
MESSAGES = 500
KILLS = 5
WRITE_SECONDS = 30.0
CATCH_UP_SECONDS = 30.0
PROGRESS_SECONDS = 60.0


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


def start_policyd(config: Path, tmp: Path, n: int) -> subprocess.Popen[bytes]:
    with open(tmp / f"stderr-{n}.log", "wb") as err:
        return subprocess.Popen([EXE, "policyd", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err)


def wait_ready(tmp: Path, n: int) -> None:
    """Until daemon `n` says it is ready: a SIGTERM before that (its handlers not yet
    installed) would end it by the signal, not by a clean stop."""
    log = tmp / f"stderr-{n}.log"
    deadline = time.monotonic() + PROGRESS_SECONDS
    while ": ready" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the daemon did not get ready"
        time.sleep(0.1)


def kill_repeatedly(start: Callable[[int], subprocess.Popen[bytes]], url: str, seed: int,
                    writing: Callable[[], bool],
                    before_kill: Callable[[], None] = lambda: None) -> int:
    """KILLS times: start the daemon, wait until it has stored more than before (however
    long a start-up takes on a loaded machine), let it work a random moment longer and
    SIGKILL it. Returns how many kills fell while the log was still being written."""
    r = random.Random(seed)
    stored, while_writing = 0, 0
    for n in range(KILLS):
        proc = start(n)
        try:
            deadline = time.monotonic() + PROGRESS_SECONDS
            while count(url, "SELECT count(*) FROM messages") <= stored:
                assert proc.poll() is None and time.monotonic() < deadline, "no progress"
                time.sleep(0.1)
            time.sleep(r.uniform(0.0, 1.5))
            before_kill()
            while_writing += writing()
        finally:  # a failed wait leaves no daemon behind either
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        stored = count(url, "SELECT count(*) FROM messages")
    return while_writing


# Six daemon starts and the writing take 2-3 minutes on a loaded machine (load 14: each
# start 15-25 s); every wait inside is bounded by its own deadline.
@pytest.mark.timeout(600)
def test_kill_9_during_a_steady_feed_loses_and_doubles_nothing(
        store_url: str, tmp_path: Path) -> None:
    sent = customer_traffic(14, MESSAGES, WRITE_SECONDS)
    assert len(sent.messages) == MESSAGES and len(sent.bounced) > 150
    log = tmp_path / "mail.log"
    log.touch()
    config = _config(tmp_path, store_url, log)
    writer = appender(log, sent.lines, WRITE_SECONDS)
    writer.start()

    def start(n: int) -> subprocess.Popen[bytes]:
        # The writer waits while a daemon starts, as the syslog test's sender does: a
        # start takes seconds on a loaded machine, and five of them would otherwise
        # use up the writing time before the kills that should fall in it.
        writer.go.clear()
        proc = start_policyd(config, tmp_path, n)
        wait_ready(tmp_path, n)
        writer.go.set()
        return proc

    # Each kill falls after progress; most while the log still grows.
    assert kill_repeatedly(start, store_url, 5, writer.is_alive) >= 3

    proc = start_policyd(config, tmp_path, KILLS)
    try:
        wait_ready(tmp_path, KILLS)
        writer.join(timeout=WRITE_SECONDS * 3)
        # Read to the end: the checkpoint after the last poll says so exactly.
        assert caught_up(store_url, lambda: log.stat().st_size, CATCH_UP_SECONDS)
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop finishes the open joins
        assert proc.wait(timeout=30) == 0

    lost, doubled = lost_and_doubled(sent, stored(store_url, MTA, sent.keys))
    assert not any(lost.values()) and not any(doubled.values()), (lost, doubled)
