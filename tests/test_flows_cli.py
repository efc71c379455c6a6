"""`extrusion flows replay` and `extrusion flows follow --once`, called as the CLI is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extrusion.cli import main
from extrusion.flows.simulate import Sender, pmacct_records, sampled
from extrusion.scoring.store import Store

T0 = 1_796_515_200.0
BOT = "10.1.2.3"


def write_day(path: Path) -> None:
    senders = [Sender(BOT, per_hour=1000), Sender("10.9.9.9", per_hour=4, mx_pool=1)]
    lines = list(pmacct_records(sampled(senders, 2000, T0, 24, seed=3), 2000))
    path.write_text("\n".join([*lines[:5], "{broken", *lines[5:]]) + "\n")


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    p = tmp_path / "extrusion.toml"
    p.write_text(f'[general]\nown_networks = ["10.0.0.0/8"]\n'
                 f'[store]\nurl = "sqlite:///{tmp_path / "x.db"}"\n'
                 f'spool_dir = "{tmp_path / "spool"}"\n'
                 f'[flows]\npath = "{tmp_path / "port25.json"}"\nstart_at = "beginning"\n')
    return p


def test_replay_prints_the_state_changes_of_a_day(conf: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    day = tmp_path / "day.json"
    write_day(day)
    assert main(["flows", "replay", "--config", str(conf), "--json", str(day)]) == 0
    out, err = capsys.readouterr()
    changes = [json.loads(line) for line in out.splitlines()]
    assert {c["sender"] for c in changes} == {f"ip:{BOT}"}
    assert [c["state"] for c in changes][:2] == ["throttled", "held"]
    assert "bypassing the smarthost" in changes[0]["reason"]
    assert ", 1 bad," in err


def test_replay_of_a_missing_file_says_so(conf: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flows", "replay", "--config", str(conf), str(tmp_path / "none")]) != 0
    assert "none: unreadable" in capsys.readouterr().err


def test_follow_once_reads_the_file_into_the_store(conf: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    write_day(tmp_path / "port25.json")
    assert main(["-q", "flows", "follow", "--config", str(conf), "--once"]) == 0
    assert "1 bad" in capsys.readouterr().err
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        row = store.sender(f"ip:{BOT}")
        assert row is not None and row.state in ("throttled", "held")
        assert store.get_checkpoint(f"flows:{tmp_path / 'port25.json'}") is not None
    finally:
        store.close()
    # Again: the checkpoint says everything was read.
    assert main(["-q", "flows", "follow", "--config", str(conf), "--once"]) == 0
    assert "0 lines" in capsys.readouterr().err
