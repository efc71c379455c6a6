"""`extrusion show KEY` on both backends: one sender whole, as text and as JSON."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extrusion.cli import main
from extrusion.config import load
from extrusion.exits import EX_DATAERR, EX_NOINPUT, EX_USAGE
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import Outcome, Status, Submission

BOT = "ip:2001:db8::66"
HALF_LIFE = 1800.0


def _failures(engine: Engine, n: int, t0: float) -> None:
    for i in range(n):
        r = f"r{i}@example.org"
        engine.submission(Submission(t0 + i, BOT, f"Q{i:05d}", "bot@example.net",
                                     (r, "friend@example.com"), client_addr="2001:db8::66"))
        engine.outcome(Outcome(t0 + i, f"Q{i:05d}", r, Status.BOUNCED, "5.1.1",
                               "550 5.1.1 user \x1b[31munknown", sender=BOT))
        engine.outcome(Outcome(t0 + i, f"Q{i:05d}", "friend@example.com", Status.SENT,
                               "2.0.0", "250 ok", sender=BOT))


@pytest.fixture
def config(store_url: str, write_config: Callable[[str], Path], tmp_path: Path
           ) -> Iterator[str]:
    path = write_config(
        f'[general]\nhostname = "mx1"\n[store]\nurl = "{store_url}"\n'
        f'spool_dir = "{tmp_path / "spool"}"\n[scoring]\nhalf_life_seconds = {HALF_LIFE}\n'
        '[[customers]]\nname = "acme"\nnetworks = ["10.0.0.0/8"]\n'
    )
    engine = open_engine(load(path))
    _failures(engine, 21, time.time() - 120)  # throttled, short of held
    engine.flush()
    engine.close()
    yield str(path)


def _show_json(config: str, *args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["show", *args, "--config", config, "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def test_show_json_holds_the_sender_whole(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The key goes through the normaliser: any spelling of the address finds the sender.
    data = _show_json(config, "ip:2001:DB8:0::0066", "-n", "3", capsys=capsys)
    assert data["sender"] == BOT and data["version"] == 1
    assert data["state"] == "throttled"
    decay = data["decay"]
    assert isinstance(decay, dict)
    score = decay["score_now"]
    assert score == pytest.approx(data["score"]) and score > 20
    assert decay["score_in_1h"] == pytest.approx(score / 4, rel=1e-3)  # two half-lives
    expected = HALF_LIFE * math.log2(score / 10.0)
    assert decay["below_watch_in_seconds"] == pytest.approx(expected, abs=2)
    assert data["worst"] == {"state": "throttled", "since": pytest.approx(data["state_since"])}
    kinds = [e["kind"] for e in data["evidence"]]  # type: ignore[union-attr]
    assert kinds[0] == "failed_recipients"
    failed = data["evidence"][0]  # type: ignore[index]
    assert failed["evidence"]["count"] == 21 and failed["score"] == 21.0
    limits = data["limits"]
    assert isinstance(limits, dict)
    assert limits["class"] == "throttled" and limits["recipients_per_hour"] == 20
    assert limits["used"]["messages_last_hour"] == 21
    assert limits["used"]["recipients_last_hour"] == 42
    messages = data["messages"]
    assert isinstance(messages, list) and len(messages) == 3
    assert messages[-1]["queue_id"] == "Q00020"
    outcomes = {r["address"]: r["outcome"] for r in messages[-1]["recipients"]}
    assert outcomes == {"r20@example.org": "failed", "friend@example.com": "delivered"}
    # 21 of 22 distinct recipients failed: throttled at once, in proportion.
    assert [(a["old"], a["new"]) for a in data["audit"]] == [  # type: ignore[union-attr]
        ("ok", "throttled")]
    # The same sender shape as `senders --json` (and the API), plus the rest.
    assert main(["senders", "--config", config, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.splitlines()[0])
    for key in listed:
        if key != "score":
            assert data[key] == listed[key], key


def test_show_pin_and_worst_state_after_release(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hold", BOT, "--config", config, "-r", "ticket 9", "--who", "kim"]) == 0
    assert main(["release", BOT, "--config", config, "-r", "cleaned", "--who", "kim"]) == 0
    assert main(["allow", BOT, "--config", config, "-r", "newsletter", "--who", "lee"]) == 0
    capsys.readouterr()
    data = _show_json(config, BOT, capsys=capsys)
    assert (data["state"], data["score"]) == ("ok", 0.0)
    assert data["worst"]["state"] == "held"  # type: ignore[index]
    assert (data["pinned"], data["pinned_by"], data["pinned_reason"]) == (
        "allow", "lee", "newsletter")
    assert data["decay"]["below_watch_in_seconds"] == 0  # type: ignore[index]


def test_show_text_reads_as_sections_without_raw_escapes(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", BOT, "--config", config, "-n", "1"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "\x1b" not in out
    assert out.startswith(f"sender   {BOT}\nstate    throttled since ")
    assert "in 1 h (half-life 1800 s); below watch (10) in " in out
    assert "+21.0  failed_recipients: 21 deliveries to distinct recipients failed" in out
    assert "limits   [throttled]" in out
    assert "recipients 42 / 20 this hour" in out
    assert "messages (latest 1)\n  " in out
    assert "!!! r20@example.org  bounced 5.1.1 550 5.1.1 user \\x1b[31munknown" in out
    assert "audit trail (1)" in out and "ok -> throttled" in out
    assert captured.err.startswith("extrusion: store ")


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("ip:192.0.2.250", EX_NOINPUT, "no such sender in the store: ip:192.0.2.250"),
        ("192.0.2.250", EX_USAGE, "is not a sender key"),
        ("customer:nobody", EX_DATAERR, "is no customer"),
        ("ip:10.1.2.3", EX_DATAERR, "belongs to customer:acme"),
    ],
)
def test_show_refuses_with_one_line(
    config: str, capsys: pytest.CaptureFixture[str], key: str, status: int, message: str
) -> None:
    assert main(["show", key, "--config", config]) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("extrusion show: ") and message in line
