"""The local spool: durable batches, replayed in order, never lost, bad files kept."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from extrusion.scoring.rows import Batch, SenderDelta
from extrusion.scoring.spool import Spool, SpoolError


def batch(n: int) -> Batch:
    b = Batch()
    b.recipients.append({"time": float(n), "queue_id": f"Q{n}", "recipient": "a@x",
                         "status": "bounced"})
    b.add_sender(SenderDelta(f"ip:192.0.2.{n}", time=float(n), score_delta=1.0), 3600.0)
    return b


def test_replays_in_order_and_removes_files(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for n in range(3):
        spool.write(batch(n))
    assert len(spool) == 3
    seen: list[Batch] = []
    assert spool.replay(seen.append) == 3
    assert [b.recipients[0]["queue_id"] for b in seen] == ["Q0", "Q1", "Q2"]
    assert seen[1] == batch(1)
    assert len(spool) == 0


def test_a_failing_write_keeps_that_file_and_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for n in range(3):
        spool.write(batch(n))
    calls: list[str] = []

    def flaky(b: Batch) -> None:
        calls.append(b.recipients[0]["queue_id"])
        if len(calls) == 2:
            raise ConnectionError("store down")

    with pytest.raises(ConnectionError):
        spool.replay(flaky)
    assert calls == ["Q0", "Q1"]
    assert len(spool) == 2
    rest: list[Batch] = []
    assert spool.replay(rest.append) == 2
    assert [b.recipients[0]["queue_id"] for b in rest] == ["Q1", "Q2"]


def test_a_corrupt_file_is_set_aside_not_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.write(batch(1))
    (tmp_path / "00000000000000000000-1-000001.batch.json").write_text("{not json")
    seen: list[Batch] = []
    assert spool.replay(seen.append) == 1
    assert len(seen) == 1
    (bad,) = spool.bad_files()
    assert bad.read_text() == "{not json"


def test_a_file_locked_by_another_replayer_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    path = spool.write(batch(1))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        seen: list[Batch] = []
        assert spool.replay(seen.append) == 0 and seen == []
    finally:
        os.close(fd)
    assert spool.replay(lambda b: None) == 1


def test_unwritable_spool_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="cannot write spool"):
        Spool(tmp_path / "file" / "spool").write(batch(1))
