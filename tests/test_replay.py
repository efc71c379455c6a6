"""`extrusion replay`: a generated log with a spam bot hidden among normal senders, through
the real engine; input forms, output forms, bad input."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extrusion.cli import main
from extrusion.exits import EX_DATAERR, EX_NOINPUT
from extrusion_dev.generate import Truth, generate

# A day of traffic ending well before "now", so no stamp looks like the future.
START = time.time() - 3 * 86400
KEYS = ["time", "sender", "state", "score", "reason"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    path = tmp_path_factory.mktemp("replay") / "mail.log"
    with open(path, "w", encoding="utf-8") as f:
        truth = generate(f, seed=7, messages=3000, senders=80, bots=1, start=START,
                         duration=8 * 3600.0)
    return path, truth


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Path:
    return write_config("")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["replay", *args])
    out, err = capsys.readouterr()
    return status, out, err


def changes(out: str) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in out.splitlines()]
    for row in rows:
        assert list(row) == KEYS
    return rows


def flagged(rows: list[dict[str, object]]) -> set[object]:
    return {r["sender"] for r in rows if r["state"] != "ok"}


def test_finds_the_bot_and_nothing_else(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path
) -> None:
    path, truth = generated
    status, out, err = run(capsys, "--config", str(config), "--json", str(path))
    assert status == 0, err
    rows = changes(out)
    assert flagged(rows) == set(truth.bots)
    assert not flagged(rows) & set(truth.innocent)
    # Caught while it was sending, not at the end of the log: times are the log's own.
    first = min(dt.datetime.fromisoformat(str(r["time"])).timestamp() for r in rows)
    assert START < first < truth.end
    assert all(isinstance(r["score"], float | int) for r in rows)
    assert "replay:" in err and "senders by state" in err  # the summary went to stderr


def test_summary_table(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path
) -> None:
    path, truth = generated
    status, out, err = run(capsys, "--config", str(config), str(path))
    assert status == 0, err
    assert f"{truth.lines:,} lines" in out
    assert "senders by state" in out and "top senders" in out
    top = out.split("top senders", 1)[1].splitlines()[2]
    assert truth.bots[0] in top and "too many delivery failures" in top
    # Customers that stayed ok are listed by score but with no reason line of their own.
    table = out.split("top senders", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    quiet = [line for line in table if line.split()[1:3] == ["ok", "ok"]]
    assert all(line.split()[-1] == key for line in quiet
               for key in [line.split()[3]]), quiet
    assert "0 skipped as unreadable" in out
    assert "\r" not in err  # no progress line when stderr is not a terminal


def test_gzip_several_files_and_stdin_give_the_same_answer(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _truth = generated
    _s, whole, _e = run(capsys, "--config", str(config), "--json", str(path))
    lines = path.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    first, second = tmp_path / "mail.log.1.gz", tmp_path / "mail.log"
    with gzip.open(first, "wb") as f:
        f.writelines(lines[:half])
    second.write_bytes(b"".join(lines[half:]))
    os.utime(first, (path.stat().st_mtime,) * 2)
    status, split, err = run(capsys, "--config", str(config), "--json", str(first), str(second))
    assert status == 0, err
    assert split == whole
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    status, piped, err = run(capsys, "--config", str(config), "--json", "-")
    assert status == 0, err
    assert piped == whole


def test_thresholds_from_the_config_change_the_verdict(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth],
    write_config: Callable[[str], Path],
) -> None:
    path, _truth = generated
    lenient = write_config("[scoring]\nfailure_trigger = 100000\nwatch_score = 500.0\n"
                           "throttle_score = 600.0\nhold_score = 700.0\n"
                           "share_min_failures = 100000\n"
                           "[probation]\nenabled = false\n", "lenient.toml")
    status, out, err = run(capsys, "--config", str(lenient), "--json", str(path))
    assert status == 0, err
    assert out == ""


def test_replay_into_a_given_store_keeps_the_verdicts(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path,
    store_url: str,
) -> None:
    from extrusion.scoring.store import Store

    path, truth = generated
    status, _out, err = run(capsys, "--config", str(config), "--store", store_url, str(path))
    assert status == 0, err
    with Store(store_url) as store:
        kept = {row.key: row.state for row in store.senders()}
    assert kept[truth.bots[0]] != "ok"
    assert all(kept.get(k, "ok") == "ok" for k in truth.innocent)


def test_the_default_store_is_thrown_away(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], tmp_path: Path,
    write_config: Callable[[str], Path],
) -> None:
    live = tmp_path / "live.db"
    cfg = write_config(f'[store]\nurl = "sqlite:///{live}"\nspool_dir = "{tmp_path}/spool"\n',
                       "live.toml")
    status, _out, err = run(capsys, "--config", str(cfg), str(generated[0]))
    assert status == 0, err
    assert not live.exists() and not (tmp_path / "spool").exists()


def test_year_of_classic_stamps_across_new_year(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    start = dt.datetime(2026, 12, 31, 20, 0).timestamp()
    path = tmp_path / "newyear.log"
    with open(path, "w", encoding="utf-8") as f:
        truth = generate(f, seed=3, messages=600, senders=20, bots=1, bot_messages=150,
                         start=start, duration=8 * 3600.0)
    written = truth.end + 600
    os.utime(path, (written, written))  # the file was last written just after its last line
    status, out, err = run(capsys, "--config", str(config), "--json", str(path))
    assert status == 0, err
    times = [dt.datetime.fromisoformat(str(r["time"])).timestamp() for r in changes(out)]
    assert times and all(truth.start <= t <= truth.end + 3600 for t in times)


# --- bad input -------------------------------------------------------------------------------


def test_missing_file_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path,
    tmp_path: Path,
) -> None:
    status, out, err = run(capsys, "--config", str(config), str(generated[0]),
                           str(tmp_path / "nope.log"))
    assert status == EX_NOINPUT
    assert out == "" and "nope.log: no such file" in err


def test_bad_store_url(capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth],
                       config: Path) -> None:
    status, out, err = run(capsys, "--config", str(config), "--store", "mysql://x/y",
                           str(generated[0]))
    assert status == 2 and "--store" in err and out == ""


def test_stdin_only_once(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    status, _out, err = run(capsys, "--config", str(config), "-", "-")
    assert status == 2 and "only once" in err


def test_truncated_gzip_reports_the_file_and_keeps_what_was_read(
    capsys: pytest.CaptureFixture[str], generated: tuple[Path, Truth], config: Path,
    tmp_path: Path,
) -> None:
    path, truth = generated
    packed = gzip.compress(path.read_bytes())
    broken = tmp_path / "mail.log.2.gz"
    broken.write_bytes(packed[: len(packed) * 2 // 3])
    status, out, err = run(capsys, "--config", str(config), str(broken))
    assert status == EX_DATAERR
    assert "mail.log.2.gz: unreadable after line" in err
    read = int(out.split(" lines in ", 1)[0].split()[-1].replace(",", ""))
    assert 0 < read < truth.lines


def test_garbage_lines_are_counted_and_shown(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    path = tmp_path / "odd.log"
    path.write_bytes(b"\xff\xfe binary junk\nNov 30 04:0\n"
                     b"Nov 30 04:00:01 smtp1 postfix/qmgr[1]: 3F2A1B0C9D: from=<a@b.exam\n"
                     b"Nov 30 04:00:02 smtp1 postfix/qmgr[1]: 3F2A1B0C9D: removed\n")
    status, out, err = run(capsys, "--config", str(config), str(path))
    assert status == 0, err
    assert "3 skipped as unreadable" in out
    assert "from=<a@b.exam" in out


def test_progress_line_on_a_terminal(generated: tuple[Path, Truth], config: Path) -> None:
    from extrusion import config as configmod
    from extrusion.replay.command import replay

    out, err = io.StringIO(), io.StringIO()
    status = replay(configmod.load(config), [str(generated[0])], out=out, err=err,
                    progress=True)
    assert status == 0
    shown = err.getvalue()
    assert "MB/s" in shown and "flagged" in shown
    assert shown.rstrip().rsplit("\r", 1)[-1].startswith(f"replay: {generated[1].lines:,} lines")
    assert " 100%  ETA 0:00 " in shown
    assert "MB/s" not in out.getvalue()


def test_installed_command(generated: tuple[Path, Truth], config: Path) -> None:
    exe = Path(sys.executable).with_name("extrusion")
    proc = subprocess.run([str(exe), "replay", "--config", str(config), "--json",
                           str(generated[0])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert flagged(changes(proc.stdout)) == set(generated[1].bots)


def test_one_process_and_two_give_the_same_verdicts(
    generated: tuple[Path, Truth], config: Path
) -> None:
    from extrusion import config as configmod
    from extrusion.replay.command import replay

    outputs = []
    for parallel in (False, True):
        out, err = io.StringIO(), io.StringIO()
        assert replay(configmod.load(config), [str(generated[0])], as_json=True, out=out,
                      err=err, parallel=parallel) == 0
        counts = err.getvalue().splitlines()[1:3]  # lines and events, not the timing
        outputs.append((out.getvalue(), counts))
    assert outputs[0] == outputs[1]
    assert flagged(changes(outputs[0][0])) == set(generated[1].bots)


@pytest.mark.parametrize("parallel", [False, True])
def test_customer_map_names_the_sender_in_both_modes(
    generated: tuple[Path, Truth], write_config: Callable[[str, str], Path], parallel: bool
) -> None:
    from extrusion import config as configmod
    from extrusion.replay.command import replay

    bot_ip = generated[1].bots[0].removeprefix("ip:")
    cfg = write_config(f'[[customers]]\nname = "dsl-pool-7"\nnetworks = ["{bot_ip}/32"]\n',
                       "customers.toml")
    out, err = io.StringIO(), io.StringIO()
    assert replay(configmod.load(cfg), [str(generated[0])], as_json=True, out=out, err=err,
                  parallel=parallel) == 0
    assert flagged(changes(out.getvalue())) == {"customer:dsl-pool-7"}



def test_the_engine_opens_while_this_hosts_names_are_looked_up(
    generated: tuple[Path, Truth], config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`postconf` (a second where Postfix is installed but not configured) overlaps the
    engine's opening instead of going before it; the names still reach the reader."""
    from extrusion import config as configmod
    from extrusion import identity
    from extrusion.replay import command

    opened = threading.Event()
    looked_up: list[bool] = []
    real_open = command._open_engine

    def open_engine(*args: Any, **kwargs: Any) -> Any:
        opened.set()
        return real_open(*args, **kwargs)

    def myhostname(_config_dir: str = "") -> str:
        looked_up.append(opened.wait(timeout=60))
        return ""

    monkeypatch.setattr(command, "_open_engine", open_engine)
    monkeypatch.setattr(identity, "postfix_myhostname", myhostname)
    out, err = io.StringIO(), io.StringIO()
    assert command.replay(configmod.load(config), [str(generated[0])], as_json=True, out=out,
                          err=err, parallel=True) == 0
    assert looked_up == [True]  # once, and only once the engine was opening
    assert flagged(changes(out.getvalue())) == set(generated[1].bots)

def _postfix_message(t: float, qid: str, client: str, sender: str, rcpt: str,
                     bounced: bool) -> list[str]:
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime(t))
    outcome = ("dsn=5.1.1, status=bounced (host mx.example.com[198.51.100.1] said: 550 5.1.1 "
               f"<{rcpt}>: Recipient address rejected: User unknown (in reply to RCPT TO "
               "command))") if bounced else "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)"
    return [
        f"{stamp} mx postfix/smtpd[100]: {qid}: client=gw.corp.example[{client}]",
        f"{stamp} mx postfix/qmgr[102]: {qid}: from=<{sender}>, size=900, nrcpt=1 "
        "(queue active)",
        f"{stamp} mx postfix/smtp[103]: {qid}: to=<{rcpt}>, "
        f"relay=mx.example.com[198.51.100.1]:25, delay=1, delays=0/0/0/1, {outcome}",
        f"{stamp} mx postfix/qmgr[102]: {qid}: removed",
    ]


def test_a_rejection_daemon_is_one_misconfigured_object_and_never_throttled(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    """Its auto-replies (a robot sender, not <>) fail 25 times: plain failure counting
    would throttle it; replay names it misconfigured instead, once."""
    start = time.time() - 7200
    lines: list[str] = []
    for i in range(30):
        lines += _postfix_message(start + 60 * i, f"4A{i:08X}", "192.0.2.80",
                                  "postmaster@corp.example", f"forged{i}@example.com",
                                  bounced=i % 6 != 0)
    path = tmp_path / "daemon.log"
    path.write_text("\n".join(lines) + "\n")
    status, out, err = run(capsys, "--config", str(config), "--json", str(path))
    assert status == 0, err
    rows = changes(out)
    assert [(r["sender"], r["state"]) for r in rows] == [("ip:192.0.2.80", "misconfigured")]
    assert str(rows[0]["reason"]).startswith("rejection daemon: ")
    found = dt.datetime.fromisoformat(str(rows[0]["time"])).timestamp()
    assert start < found <= start + 60 * 30


def test_a_rejection_daemon_from_the_log_alone_is_a_misconfigured_object(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    # No headers in a log: postmaster@ of the customer's own domain, one recipient per
    # message, forged recipients that mostly fail. Reported, never throttled.
    lines = []
    for i in range(12):
        qid, s = f"4A{i:03X}B", f"{i % 60:02d}"
        lines += [
            f"May 19 10:{i:02d}:{s} mx1 postfix/smtpd[11]: {qid}: client=corp[192.0.2.80]",
            f"May 19 10:{i:02d}:{s} mx1 postfix/qmgr[12]: {qid}: "
            "from=<postmaster@corp.example>, size=900, nrcpt=1 (queue active)",
            f"May 19 10:{i:02d}:{s} mx1 postfix/smtp[13]: {qid}: to=<forged{i}@example.org>, "
            "relay=mx.example.org[203.0.113.5]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, "
            "status=bounced (host mx.example.org[203.0.113.5] said: 550 5.1.1 "
            "<forged@example.org>: Recipient address rejected: User unknown)",
            f"May 19 10:{i:02d}:{s} mx1 postfix/qmgr[12]: {qid}: removed",
        ]
    log = tmp_path / "daemon.log"
    log.write_text("\n".join(lines) + "\n")
    status, out, err = run(capsys, "--json", str(log))
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["sender"], r["state"]) for r in rows] == [("ip:192.0.2.80", "misconfigured")]
    assert list(rows[0]) == ["time", "sender", "state", "score", "reason"]
    assert rows[0]["reason"].startswith("rejection daemon: ")
