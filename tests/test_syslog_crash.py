"""`kill -9` during a steady syslog feed loses nothing and counts nothing twice.

The syslog twin of test_feed_crash.py: `extrusion policyd` receives realistic
Postfix lines as datagrams on a unix datagram socket (a sender there waits
while the daemon is away instead of losing datagrams, as UDP would), journals
them (maillog/journal.py) and feeds the journal crash-safely. It is killed with
SIGKILL five times while the feed works through the journal and restarted each
time. At the end the store holds every message and every bounced recipient
exactly once, with the counters adding up to what was sent, on SQLite and
PostgreSQL. Before each kill the sender pauses until the journal
stops growing: datagrams still in the kernel's socket buffer when a process
dies are lost by any receiver (documented), and the kill should hit the feed,
not that buffer.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from extrusion_dev.crashfeed import (
    SyslogSender,
    caught_up,
    customer_traffic,
    journal_settled,
    lost_and_doubled,
    stored,
)

from .conftest import free_port
from .helpers import toml_text
from .test_feed_crash import (
    KILLS,
    MESSAGES,
    MTA,
    WRITE_SECONDS,
    kill_repeatedly,
    start_policyd,
    wait_ready,
)

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


@pytest.mark.timeout(600)  # as test_feed_crash's: six daemon starts on a loaded machine
def test_kill_9_during_a_steady_syslog_feed_loses_and_doubles_nothing(
        store_url: str, tmp_path: Path) -> None:
    sent = customer_traffic(15, MESSAGES, WRITE_SECONDS)
    sock = tmp_path / "syslog.sock"
    journal = tmp_path / "spool" / "syslog-journal" / "journal"
    config = _config(tmp_path, store_url, sock)
    sender = SyslogSender(sock, sent.lines, WRITE_SECONDS)
    sender.start()

    def pause_sender() -> None:
        sender.go.clear()
        sender.idle.wait(timeout=10)
        journal_settled(journal)

    def start(n: int) -> subprocess.Popen[bytes]:
        sender.go.set()  # resumed once the daemon is back
        return start_policyd(config, tmp_path, n)

    # Each kill falls after progress; most while datagrams still come.
    def writing() -> bool:
        return not sender.done.is_set()

    assert kill_repeatedly(start, store_url, 6, writing, before_kill=pause_sender) >= 3

    proc = start(KILLS)
    try:
        wait_ready(tmp_path, KILLS)
        assert sender.done.wait(timeout=WRITE_SECONDS * 3)
        journal_settled(journal)
        assert caught_up(store_url, lambda: journal.stat().st_size, CATCH_UP_SECONDS)
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop finishes the open joins
        assert proc.wait(timeout=30) == 0

    # Every datagram sent was journaled once (none dropped, none lost at a kill).
    assert len(journal.read_text().splitlines()) == len(sent.lines)
    lost, doubled = lost_and_doubled(sent, stored(store_url, MTA, sent.keys))
    assert not any(lost.values()) and not any(doubled.values()), (lost, doubled)
