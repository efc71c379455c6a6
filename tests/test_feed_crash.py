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


def kill_repeatedly(start: Callable[[int], subprocess.Popen[bytes]], url: str, seed: int,
                    before_kill: Callable[[], None] = lambda: None) -> list[int]:
    """KILLS times: start the daemon, let it work a few seconds, SIGKILL it; the messages
    stored at each kill (to show the kills fell in the middle of the feed)."""
    r = random.Random(seed)
    stored_at_kill: list[int] = []
    for n in range(KILLS):
        proc = start(n)
        time.sleep(r.uniform(2.5, 4.5))
        before_kill()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        stored_at_kill.append(count(url, "SELECT count(*) FROM messages"))
    return stored_at_kill


def test_kill_9_during_a_steady_feed_loses_and_doubles_nothing(
        store_url: str, tmp_path: Path) -> None:
    sent = customer_traffic(14, MESSAGES, WRITE_SECONDS)
    assert len(sent.messages) == MESSAGES and len(sent.bounced) > 150
    log = tmp_path / "mail.log"
    log.touch()
    config = _config(tmp_path, store_url, log)
    writer = appender(log, sent.lines, WRITE_SECONDS)
    writer.start()
    stored_at_kill = kill_repeatedly(lambda n: start_policyd(config, tmp_path, n), store_url, 5)
    # The kills fell in the middle of the feed, after progress.
    assert writer.is_alive()
    assert len(set(stored_at_kill)) >= 3, stored_at_kill

    proc = start_policyd(config, tmp_path, KILLS)
    try:
        writer.join(timeout=WRITE_SECONDS * 3)
        # Read to the end: the checkpoint after the last poll says so exactly.
        assert caught_up(store_url, lambda: log.stat().st_size, CATCH_UP_SECONDS)
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop finishes the open joins
        assert proc.wait(timeout=30) == 0

    lost, doubled = lost_and_doubled(sent, stored(store_url, MTA, sent.keys))
    assert not any(lost.values()) and not any(doubled.values()), (lost, doubled)
