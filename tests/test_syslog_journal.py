"""The syslog journal: what it writes reads back exactly, it rotates, it is capped and loud."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from extrusion.config import ConfigError, from_dict
from extrusion.maillog import journal as journaling
from extrusion.maillog.journal import SyslogJournal, deliver

from .conftest import free_port
from .helpers import toml_text
from .test_feed_crash import EXE

MIB = 1 << 20


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[object, ...]] = []

    def entry(self, t: float, host: str, program: str, pid: str, message: str) -> None:
        self.got.append(("entry", t, host, program, pid, message))

    def line(self, text: str) -> None:
        self.got.append(("line", text))


def read_back(j: SyslogJournal) -> list[tuple[object, ...]]:
    rec = Recorder()
    for path in (j.rotated, j.path):
        if path.exists():
            for text in path.read_text().split("\n")[:-1]:
                deliver(rec, text)
    return rec.got


def test_entries_and_raw_lines_read_back_exactly_even_hostile_ones(tmp_path: Path) -> None:
    j = SyslogJournal(tmp_path, MIB)
    hostile = "a\nb\r\x1b[31m\x00 \u2028 é"
    j.entry(1764980000.123456, "mta1", "postfix/smtp", "814", "ABC: to=<x@y>, status=sent")
    j.entry(0.1, "", "", "", hostile)
    j.line("not syslog at all\n" + hostile)
    j.close()
    assert len(j.path.read_bytes().splitlines()) == 3  # a newline never splits a record
    assert read_back(j) == [
        ("entry", 1764980000.123456, "mta1", "postfix/smtp", "814", "ABC: to=<x@y>, status=sent"),
        ("entry", 0.1, "", "", "", hostile),
        ("line", "not syslog at all\n" + hostile),
    ]


def test_a_line_not_written_by_the_journal_goes_to_the_feed_as_garbage(tmp_path: Path) -> None:
    rec = Recorder()
    for text in ('{"torn', "[1, 2]", "42", '["x", "h", "p", "1", "m"]'):
        deliver(rec, text)
    assert rec.got == [("line", '{"torn'), ("line", "[1, 2]"), ("line", "42"),
                       ("line", '["x", "h", "p", "1", "m"]')]


def test_rotates_at_half_the_cap_then_drops_loudly_until_released(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    j = SyslogJournal(tmp_path, MIB)
    record = "x" * 1000
    n = 0
    while j.rotations == 0:
        assert j.append(record)
        n += 1
    first_inode = j.rotated.stat().st_ino
    assert j.rotated.stat().st_size <= MIB // 2 and n > 500
    with caplog.at_level(logging.WARNING, "extrusion.maillog.journal"):
        while j.append(record):
            n += 1
        assert not j.append(record)
        assert j.dropped == 2 and j.written == n
        assert j.rotated.stat().st_size + j.path.stat().st_size <= MIB
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "DROPPED" in errors[0].getMessage()
        # The follower still has journal.1 open, or the checkpoint names it: kept.
        assert not j.release({first_inode}, None)
        assert not j.release(set(), first_inode)
        assert j.rotated.exists()
        # Read and checkpointed past: deleted, and the journal takes datagrams again.
        assert j.release({j.path.stat().st_ino}, j.path.stat().st_ino)
        assert not j.rotated.exists()
        assert j.append(record)
        assert any("accepts datagrams again" in r.getMessage() for r in caplog.records)
    assert j.rotations == 2 and j.dropped == 2


def test_unread_bytes_follow_the_position(tmp_path: Path) -> None:
    j = SyslogJournal(tmp_path, MIB)
    j.line("one")
    j.line("two")
    size = j.path.stat().st_size
    ino = j.path.stat().st_ino
    assert j.unread_bytes(None) == size
    assert j.unread_bytes((ino, 0)) == size
    assert j.unread_bytes((ino, size)) == 0


def test_the_cap_is_checked_at_start_up() -> None:
    with pytest.raises(ConfigError, match="syslog_journal_max_bytes"):
        from_dict({"maillog": {"syslog_journal_max_bytes": 1000}})
    with pytest.raises(ValueError, match="at least"):
        SyslogJournal("/nonexistent-never-made", 1000)
    cfg = from_dict({"maillog": {"syslog_journal_max_bytes": MIB}})
    assert cfg.maillog.syslog_journal_max_bytes == MIB
    assert journaling.journal_dir("/var/lib/extrusion/spool") == Path(
        "/var/lib/extrusion/spool/syslog-journal")


def test_a_journal_that_cannot_be_kept_is_one_line_and_exit_69(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "spool"
    not_a_dir.write_text("a file where the spool directory should be")
    config = tmp_path / "extrusion.toml"
    config.write_text(toml_text({
        "general": {"hostname": "mta1.test"},
        "store": {"url": f"sqlite:///{tmp_path / 'x.db'}", "spool_dir": str(not_a_dir)},
        "policyd": {"listen": f"tcp:{free_port()}:interface=127.0.0.1",
                    "hold_queued_mail": False},
        "api": {"listen": f"tcp:{free_port()}:interface=127.0.0.1"},
        "milter": {"enabled": False},
        "maillog": {"source": "syslog", "syslog_listen": f"unix:{tmp_path / 's.sock'}"},
    }))
    done = subprocess.run([EXE, "policyd", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 69, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot keep the syslog journal in {not_a_dir / 'syslog-journal'}" in done.stderr
