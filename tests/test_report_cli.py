"""`extrusion report` end to end: a config, a real store, each format, each user error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from extrusion.cli import main
from extrusion.scoring.store import Store

from .conftest import free_port
from .test_report_load import BOT, DAEMON, WORM, write_scenario

WriteConfig = Callable[..., Path]


@pytest.fixture
def config(store_url: str, write_config: WriteConfig) -> Path:
    with Store(store_url) as store:
        write_scenario(store)
    return write_config(f'[store]\nurl = "{store_url}"\n')


def test_text_report_on_stdout(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(config), "--since", "all"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("extrusion report: 4 flagged senders, 1 misconfigured\n")
    assert f"=== {BOT} customer=- state=held" in out
    assert "HELO = lrhnow.usa.net\n2007-05-19 23:11:22 kwntefsqhi@usa.net Size=8339\n" in out


def test_json_and_html_to_files(config: Path, tmp_path: Path) -> None:
    as_json, as_html = tmp_path / "r.json", tmp_path / "r.html"
    assert main(["report", "--config", str(config), "--since", "2007-05-19",
                 "--format", "json", "--out", str(as_json)]) == 0
    doc = json.loads(as_json.read_text(encoding="utf-8"))
    assert [s["sender"] for s in doc["misconfigured"]] == [DAEMON]
    assert doc["since"] == "2007-05-19T00:00:00+00:00"
    assert main(["report", "--config", str(config), "--since", "all", "--state", "throttled",
                 "--format", "html", "--out", str(as_html)]) == 0
    page = as_html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and f">{WORM}</a>" in page
    assert f">{BOT}</a>" not in page  # held, not throttled
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_one_sender(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(config), "--since", "all", "--sender", WORM]) == 0
    out = capsys.readouterr().out
    assert f"=== {WORM} " in out and f"=== {BOT} " not in out


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--since", "yesterday"], 2, "--since 'yesterday': expected a duration"),
        (["--state", "evil"], 2, "--state 'evil': expected one of ok, watch, throttled"),
        (["--sender", "ip:203.0.113.250"], 1, "no sender 'ip:203.0.113.250' in the store"),
        (["--out", "/nonexistent-dir/r.txt"], 73, "cannot write /nonexistent-dir/r.txt"),
    ],
)
def test_user_errors_are_one_line_with_a_status(
    config: Path, capsys: pytest.CaptureFixture[str], args: list[str], status: int, message: str
) -> None:
    assert main(["report", "--config", str(config), "--since", "all", *args]) == status
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith("extrusion report: ")
    assert captured.out == ""


def test_missing_sqlite_store_is_not_created(
    tmp_path: Path, write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "nowhere" / "extrusion.db"
    cfg = write_config(f'[store]\nurl = "sqlite:///{db}"\n')
    assert main(["report", "--config", str(cfg)]) == 69
    assert "no store at sqlite:///" in capsys.readouterr().err
    assert not db.exists() and not db.parent.exists()


def test_sqlite_file_without_tables(
    tmp_path: Path, write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    cfg = write_config(f'[store]\nurl = "sqlite:///{db}"\n')
    assert main(["report", "--config", str(cfg)]) == 69
    assert "has no extrusion tables" in capsys.readouterr().err


def test_unreachable_postgresql(write_config: WriteConfig,
                                capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/extrusion"
    cfg = write_config(f'[store]\nurl = "{url}"\n')
    assert main(["report", "--config", str(cfg)]) == 69
    err = capsys.readouterr().err
    assert "store unavailable" in err and err.count("\n") == 1
    assert "secret" not in err  # the password is never shown


def test_installed_command(config: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "extrusion.cli", "report", "--config", str(config),
         "--since", "all", "--format", "json"],
        capture_output=True, text=True, timeout=90, check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.returncode == 0, proc.stderr
    assert BOT in [s["sender"] for s in json.loads(proc.stdout)["senders"]]
