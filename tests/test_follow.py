"""Following a real log file: growth, rotation both ways, restarts — nothing lost, nothing twice."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from extrusion.checkpoint import MemoryCheckpoints
from extrusion.maillog.follow import (
    MAX_LINE_BYTES,
    ROTATION_GRACE_POLLS,
    TOO_LONG_HEAD_BYTES,
    FileFollower,
)


def lines(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:04d} postfix/smtp[1]: some text to make the line long enough"
            for i in range(n)]


def append(path: Path, items: list[str] | str) -> None:
    text = items if isinstance(items, str) else "".join(f"{x}\n" for x in items)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


class Follow:
    """A follower with its own list of delivered lines."""

    def __init__(self, path: Path, checkpoints: MemoryCheckpoints | None = None,
                 start_at: str = "beginning") -> None:
        self.got: list[str] = []
        self.commits = 0
        self.f = FileFollower(path, self.got.append, checkpoints=checkpoints,
                              start_at=start_at, commit=self._commit)  # type: ignore[arg-type]

    def _commit(self) -> None:
        self.commits += 1

    def poll(self, times: int = 1) -> list[str]:
        start = len(self.got)
        for _ in range(times):
            self.f.poll()
        return self.got[start:]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "mail.log"


def test_reads_growth_and_waits_for_the_end_of_a_line(log: Path) -> None:
    append(log, lines("a", 3))
    fw = Follow(log)
    assert fw.poll() == lines("a", 3)
    assert fw.poll() == []
    append(log, "half a li")
    assert fw.poll() == []
    append(log, "ne\nnext\n")
    assert fw.poll() == ["half a line", "next"]
    fw.f.close()


def test_start_at_end_skips_history_but_not_an_unfinished_last_line(log: Path) -> None:
    append(log, lines("old", 5))
    append(log, "written when we started, fin")
    fw = Follow(log, start_at="end")
    assert fw.poll() == []
    append(log, "ished\n")
    append(log, lines("new", 2))
    assert fw.poll() == ["written when we started, finished", *lines("new", 2)]
    fw.f.close()


def test_file_missing_at_start_is_read_from_its_beginning_once_created(log: Path) -> None:
    fw = Follow(log, start_at="end")
    assert fw.poll() == []
    append(log, lines("a", 2))
    assert fw.poll() == lines("a", 2)
    fw.f.close()


def test_rotation_by_rename_and_create(log: Path) -> None:
    append(log, lines("a", 10))
    fw = Follow(log)
    assert fw.poll() == lines("a", 10)
    append(log, lines("b", 4))  # not read yet when the rotation happens
    os.rename(log, log.with_name("mail.log.1"))
    assert fw.poll() == lines("b", 4)  # path gone for a moment: keep reading the old file
    append(log, lines("c", 3))
    # The old file's writer has not reopened yet: its last lines still count.
    append(log.with_name("mail.log.1"), lines("late", 2))
    got = fw.poll()
    assert sorted(got) == sorted(lines("late", 2) + lines("c", 3))
    append(log, lines("d", 2))
    got += fw.poll(ROTATION_GRACE_POLLS + 1)
    assert got.count(lines("c", 3)[0]) == 1
    assert sorted(fw.got) == sorted(lines("a", 10) + lines("b", 4) + lines("late", 2)
                                    + lines("c", 3) + lines("d", 2))
    fw.f.close()


def test_rotation_with_the_new_file_already_there(log: Path) -> None:
    append(log, lines("a", 3))
    fw = Follow(log)
    fw.poll()
    append(log, lines("b", 3))
    os.rename(log, log.with_name("mail.log.1"))
    append(log, lines("c", 3))
    assert fw.poll() == lines("b", 3) + lines("c", 3)
    fw.f.close()


def test_copytruncate_reads_the_unread_lines_from_the_copy(log: Path) -> None:
    append(log, lines("a", 10))
    fw = Follow(log)
    fw.poll()
    append(log, lines("b", 3))  # written just before logrotate copied the file
    shutil.copy2(log, log.with_name("mail.log.1"))
    os.truncate(log, 0)
    append(log, lines("c", 2))
    assert fw.poll() == lines("b", 3) + lines("c", 2)
    append(log, lines("d", 1))
    assert fw.poll() == lines("d", 1)
    fw.f.close()


def test_copytruncate_noticed_even_when_the_new_file_grew_past_our_offset(log: Path) -> None:
    append(log, lines("a", 3))
    fw = Follow(log)
    fw.poll()
    shutil.copy2(log, log.with_name("mail.log.1"))
    os.truncate(log, 0)
    append(log, lines("c", 20))  # longer than what we had read: the size alone would not tell
    assert fw.poll() == lines("c", 20)
    fw.f.close()


def test_restart_from_checkpoint_after_a_burst_written_while_stopped(log: Path) -> None:
    cps = MemoryCheckpoints()
    append(log, lines("a", 50))
    fw = Follow(log, cps)
    assert len(fw.poll()) == 50
    fw.f.close()
    append(log, lines("burst", 500))
    append(log, "unfini")
    again = Follow(log, cps, start_at="end")
    assert again.poll() == lines("burst", 500)
    append(log, "shed\n")
    assert again.poll() == ["unfinished"]
    assert cps.saved[again.f.name][:2] == (os.stat(log).st_ino, os.path.getsize(log))
    assert again.commits >= 1
    again.f.close()


def test_restart_after_rename_rotation_while_stopped(log: Path) -> None:
    cps = MemoryCheckpoints()
    append(log, lines("a", 5))
    fw = Follow(log, cps)
    fw.poll()
    fw.f.close()
    append(log, lines("b", 5))
    os.rename(log, log.with_name("mail.log.1"))
    # An older compressed generation must not confuse the search.
    log.with_name("mail.log.2.gz").write_bytes(b"\x1f\x8b not really")
    append(log, lines("c", 5))
    again = Follow(log, cps)
    assert again.poll() == lines("b", 5) + lines("c", 5)
    again.f.close()


def test_restart_after_copytruncate_while_stopped(log: Path) -> None:
    cps = MemoryCheckpoints()
    append(log, lines("a", 20))
    fw = Follow(log, cps)
    fw.poll()
    fw.f.close()
    append(log, lines("b", 5))
    shutil.copy2(log, log.with_name("mail.log.1"))
    os.truncate(log, 0)
    append(log, lines("c", 2))
    again = Follow(log, cps)
    assert again.poll() == lines("b", 5) + lines("c", 2)
    again.f.close()


def test_the_same_file_followed_twice_in_a_row_counts_every_line_once(log: Path) -> None:
    cps = MemoryCheckpoints()
    total: list[str] = []
    for round_ in range(5):
        append(log, lines(f"r{round_}", 100))
        fw = Follow(log, cps)
        total += fw.poll()
        fw.f.close()
    assert total == [x for r in range(5) for x in lines(f"r{r}", 100)]


def test_checkpoints_in_the_real_store(log: Path, store_url: str) -> None:
    from extrusion.scoring.store import Store

    append(log, lines("a", 30))
    with Store(store_url) as store:
        got: list[str] = []
        fw = FileFollower(log, got.append, checkpoints=store, start_at="beginning")
        fw.poll()
        fw.close()
        append(log, lines("b", 7))
        fw2 = FileFollower(log, got.append, checkpoints=store, start_at="end")
        fw2.poll()
        fw2.close()
        assert store.get_checkpoint(fw.name) == (os.stat(log).st_ino, os.path.getsize(log),
                                                 os.path.getsize(log), os.stat(log).st_dev)
    assert got == lines("a", 30) + lines("b", 7)


def test_hostile_bytes_and_endless_lines_never_stall(log: Path) -> None:
    with open(log, "wb") as f:
        f.write(b"ok line\n\xff\xfe\x00 broken utf-8\n")
        f.write(b"x" * (MAX_LINE_BYTES * 2 + 10))
        f.write(b"\nafter\n")
    heads: list[str] = []
    fw = Follow(log)
    fw.f.too_long = heads.append
    got = fw.poll()
    assert got[0] == "ok line"
    assert got[1].endswith(" broken utf-8") and "\ufffd" in got[1]
    # The over-long line is reported once by its start, never handed over in pieces.
    assert got[2:] == ["after"]
    assert heads == ["x" * TOO_LONG_HEAD_BYTES]
    assert fw.f.too_long_lines == 1 and fw.f.lines == 4
    fw.f.close()


def test_an_over_long_line_written_slowly_is_skipped_without_being_held(log: Path) -> None:
    """A 6 MiB line arriving over several polls: memory stays bounded, the line after it
    is read, and the checkpoint moves past it once its newline is there."""
    store = MemoryCheckpoints()
    heads: list[str] = []
    fw = Follow(log, checkpoints=store)
    fw.f.too_long = heads.append
    append(log, lines("a", 2))
    assert fw.poll() == lines("a", 2)
    before = os.path.getsize(log)
    piece = "y" * (3 << 20)
    for _ in range(2):
        append(log, piece)
        assert fw.poll(3) == []
        cur = fw.f._cur
        assert cur is not None and len(cur.buf) <= MAX_LINE_BYTES  # never the whole line
        assert store.get_checkpoint(fw.f.name)[:2] == (os.stat(log).st_ino, before)
    append(log, "\n")
    append(log, lines("b", 2))
    assert fw.poll(3) == lines("b", 2)
    assert len(heads) == 1 and heads[0] == "y" * TOO_LONG_HEAD_BYTES
    assert store.get_checkpoint(fw.f.name)[:2] == (os.stat(log).st_ino, os.path.getsize(log))
    fw.f.close()


def test_a_callback_that_raises_costs_its_line_only(log: Path) -> None:
    """The position stays exact: nothing is read twice, the next lines arrive."""
    got: list[str] = []

    def deliver(line: str) -> None:
        if "boom" in line:
            raise RuntimeError("a bug in the reader")
        got.append(line)

    store = MemoryCheckpoints()
    fw = FileFollower(log, deliver, checkpoints=store, start_at="beginning")
    append(log, [*lines("a", 2), "boom", *lines("b", 2)])
    fw.poll()
    fw.poll()
    assert got == lines("a", 2) + lines("b", 2)
    assert fw.deliver_errors == 1
    assert store.get_checkpoint(fw.name)[:2] == (os.stat(log).st_ino, os.path.getsize(log))
    fw.close()


def test_crlf_line_endings(log: Path) -> None:
    with open(log, "wb") as f:
        f.write(b"one\r\ntwo\r\n")
    fw = Follow(log)
    assert fw.poll() == ["one", "two"]
    fw.f.close()


def test_a_held_line_keeps_the_checkpoint_and_is_read_again_after_a_restart(log: Path) -> None:
    """`hold` names a line whose evidence is only in memory: the checkpoint resumes there,
    says how far lines were read, and a restart marks the lines up to there as re-read."""
    cps = MemoryCheckpoints()
    held: dict[str, int] = {}
    starts: dict[str, int] = {}

    def deliver(line: str) -> None:
        starts[line] = fw.line_at[1]

    fw = FileFollower(log, deliver, checkpoints=cps, start_at="beginning",
                      hold=lambda ino: held.get("at"))
    append(log, lines("a", 5))
    fw.poll()
    a, b = lines("a", 5), lines("b", 2)
    held["at"] = starts[a[2]]  # say a[2] began a message still open
    append(log, lines("b", 2))
    fw.poll()
    size = os.path.getsize(log)
    assert cps.get_checkpoint(fw.name) == (os.stat(log).st_ino, starts[a[2]], size,
                                            os.stat(log).st_dev)
    fw.close()

    again: list[tuple[str, bool]] = []
    fw2 = FileFollower(log, lambda x: again.append((x, fw2.rereading)), checkpoints=cps)
    append(log, ["c"])
    fw2.poll()
    assert again == [(x, True) for x in [*a[2:], *b]] + [("c", False)]
    fw2.close()
