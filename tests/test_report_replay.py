"""`extrusion replay LOG --report FMT`: the report of what a replay flagged, from its own store."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from extrusion.cli import main
from extrusion_dev.generate import Truth, generate

START = time.time() - 3 * 86400


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    path = tmp_path_factory.mktemp("replay-report") / "mail.log"
    with open(path, "w", encoding="utf-8") as f:
        truth = generate(f, seed=11, messages=1500, senders=40, bots=1, start=START,
                         duration=6 * 3600.0)
    return path, truth


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Path:
    return write_config("")


def test_text_report_after_the_summary_names_the_bot_with_its_evidence(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path
) -> None:
    log, truth = generated
    assert main(["replay", str(log), "--config", str(config), "--report", "text"]) == 0
    out = capsys.readouterr().out
    (bot,) = truth.bots
    assert "source: replay" in out
    header = next(line for line in out.splitlines() if line.startswith(f"=== {bot} "))
    assert re.search(r"state=(throttled|held|blocked)", header)
    # The bot's mail in the classic form: failures first, marked "!!!".
    section = out[out.index(header):]
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ Size=\d+\n!!! ", section, re.M)
    flagged = re.findall(r"^=== (\S+) ", out.split("Misconfigured")[0], re.M)
    assert set(flagged) <= {bot} | set(truth.bots)
    assert not set(flagged) & set(truth.innocent)


def test_json_changes_on_stdout_and_the_report_in_a_file(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path,
    tmp_path: Path,
) -> None:
    log, truth = generated
    page, doc_path = tmp_path / "replay.html", tmp_path / "replay.json"
    assert main(["replay", str(log), "--config", str(config), "--json",
                 "--report", "json", "--report-out", str(doc_path)]) == 0
    out = capsys.readouterr().out
    # stdout still carries only the state changes.
    assert all(list(json.loads(line)) == ["time", "sender", "state", "score", "reason"]
               for line in out.splitlines())
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    assert doc["source"] == "replay" and doc["since"] is None
    assert [s["sender"] for s in doc["senders"]] == list(truth.bots)
    bot = doc["senders"][0]
    assert bot["counts"]["failed"] > 20 and bot["messages"]
    assert any(a["sender"] in truth.innocent for a in doc["activity"])

    assert main(["replay", str(log), "--config", str(config), "--report", "html",
                 "--report-out", str(page)]) == 0
    assert page.read_text(encoding="utf-8").count("<svg") >= 3


def test_report_with_json_needs_a_file(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path
) -> None:
    log, _ = generated
    assert main(["replay", str(log), "--config", str(config), "--json",
                 "--report", "text"]) == 2
    err = capsys.readouterr().err
    assert "--report with --json needs --report-out FILE" in err and err.count("\n") == 1


def test_unwritable_report_file_ends_the_replay_with_one_line(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path
) -> None:
    log, _ = generated
    assert main(["replay", str(log), "--config", str(config), "--report", "text",
                 "--report-out", "/nonexistent-dir/r.txt"]) == 73
    err = capsys.readouterr().err
    assert "--report: cannot write /nonexistent-dir/r.txt" in err
