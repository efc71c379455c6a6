"""benchmarks/pyfloor.py, the staged Python policy floors benchmarks/mta.py runs beside
`extrusion policyd`: each stage answers DUNNO to every request and does the log work
its name says (follow, parse, join), no more and no less."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.pyfloor import STAGES, line_handler
from extrusion.config import load as load_config
from extrusion.maillog.feed import LogFeed
from tests.conftest import free_port

PYFLOOR = Path(__file__).resolve().parent.parent / "benchmarks" / "pyfloor.py"
REFERENCE = Path(__file__).parent / "data" / "maillog" / "postfix-3.7.jsonl"
START_TIMEOUT = 30.0
REQUEST = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@customer.example\n"
           b"recipient=b@remote.example\nclient_address=127.0.0.5\n\n")


def postfix_lines() -> list[str]:
    return [json.loads(row)["line"] for row in REFERENCE.read_text().splitlines()]


def write_config(tmp_path: Path, log: Path) -> Path:
    conf = tmp_path / "extrusion.toml"
    conf.write_text(f'[maillog]\npath = "{log}"\nformat = "postfix"\npoll_seconds = 0.05\n')
    return conf


def test_parse_stage_parses_every_line_and_joins_none(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, tmp_path / "maillog"))
    parse = line_handler("parse", cfg)
    join = line_handler("join", cfg)
    for line in postfix_lines():
        parse(line)
        join(line)
    parsed, joined = parse.__self__, join.__self__
    assert type(parsed) is type(joined) is LogFeed
    assert not parsed.lanes and joined.lanes
    # Both parse the same lines; only the join stage's joiner makes events of them.
    assert parsed.stats.parsed == joined.stats.parsed > 0
    assert joined.stats.join.outcomes > 0
    assert parsed.stats.join.outcomes == parsed.stats.join.submissions == 0


def wait_accepting(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, "pyfloor.py exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"pyfloor.py did not listen on {port}")


def read_replies(sock: socket.socket, n: int) -> bytes:
    data = b""
    while data.count(b"\n\n") < n:
        chunk = sock.recv(4096)
        assert chunk, "connection closed before every reply"
        data += chunk
    return data


@pytest.mark.parametrize("stage", STAGES)
def test_stage_answers_dunno_and_counts_requests_and_lines(tmp_path: Path, stage: str) -> None:
    log = tmp_path / "maillog"
    lines = postfix_lines()
    log.write_text(lines[0] + "\n")  # before the start: not this run's, not read
    stats = tmp_path / "stats.json"
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(PYFLOOR), stage, "--listen",
                             f"tcp:{port}:interface=127.0.0.1", "--config",
                             str(write_config(tmp_path, log)), "--stats", str(stats)])
    try:
        wait_accepting(port, proc)
        with log.open("a") as f:
            f.write("".join(line + "\n" for line in lines[1:]))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            # Three requests, the last one split across two writes.
            sock.sendall(REQUEST * 2 + REQUEST[:40])
            sock.sendall(REQUEST[40:])
            replies = read_replies(sock, 3)
        assert replies == b"action=DUNNO\n\n" * 3
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(30)
    assert status == 0
    expected_lines = 0 if stage == "dunno" else len(lines) - 1
    assert json.loads(stats.read_text()) == {"requests": 3, "lines": expected_lines}
