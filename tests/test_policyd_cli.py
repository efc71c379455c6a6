"""The installed `extrusion policyd` / `extrusion serve` as subprocesses with generated configs.

The third depth: readiness over NOTIFY_SOCKET, answers on the wire, SIGHUP
reload (good and bad file), SIGTERM drain, a second SIGTERM, exit statuses
for a bad config and a busy port, and `serve` running the milter beside the
policy server and printing the main.cf lines.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import free_port
from .helpers import toml_text
from .test_policyd_support import ALICE, read_replies, read_until_closed, request

EXE = str(Path(sys.executable).parent / "extrusion")
READY_TIMEOUT = 30.0


class Daemon:
    """One `extrusion` daemon process; its stderr goes to a file we can read."""

    def __init__(self, tmp: Path, command: str = "policyd", **sections: dict[str, Any]) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.api_port = free_port()
        self.path = tmp / "extrusion.toml"
        self.sections = sections
        self.write()
        self.notify_path = tmp / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(READY_TIMEOUT)
        self.stderr_path = tmp / "stderr.log"
        self.stdout_path = tmp / "stdout.log"
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path)}
            # A session of its own, like a daemon started from a terminal: tests can
            # signal its whole process group as Ctrl-C would.
            self.proc = subprocess.Popen([EXE, command, "--config", str(self.path)],
                                         stdout=out, stderr=err, env=env,
                                         start_new_session=True)

    def config(self, **extra: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "general": {"hostname": "mta1.test", "log_level": "info"},
            "store": {"url": f"sqlite:///{self.tmp / 'extrusion.db'}",
                      "spool_dir": str(self.tmp / "spool")},
            "policyd": {"listen": f"tcp:{self.port}:interface=127.0.0.1",
                        "hold_queued_mail": False, "drain_seconds": 30.0},
            "api": {"listen": f"tcp:{self.api_port}:interface=127.0.0.1"},
            "milter": {"enabled": False},
            # Not the machine's own mail log (the default): tests that want a feed say so.
            "maillog": {"source": "none"},
        }
        for name, values in {**self.sections, **extra}.items():
            data[name] = {**data.get(name, {}), **values} if isinstance(values, dict) else values
        return data

    def write(self, **extra: Any) -> None:
        self.path.write_text(toml_text(self.config(**extra)))

    def notifications(self, until: str) -> list[str]:
        got: list[str] = []
        while until not in got:
            got.append(self.notify.recv(1024).decode())
        return got

    def ask(self, data: bytes, n: int = 1) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(data)
            return read_replies(s, n)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged; stderr:\n{self.stderr()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.notify.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


def start(daemons: list[Daemon], tmp: Path, command: str = "policyd", **kw: Any) -> Daemon:
    d = Daemon(tmp, command, **kw)
    daemons.append(d)
    return d


@pytest.mark.integration
def test_policyd_lifecycle_ready_answer_reload_drain(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    d = start(daemons, tmp_path)
    assert d.notifications(until="READY=1")[-1] == "READY=1"
    assert d.ask(request() + request("END-OF-MESSAGE", recipient_count=2), 2) == [
        b"action=DUNNO\n\n"] * 2

    # SIGHUP with an override added: the next answer follows it, on a connection
    # opened before the reload.
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        d.write(overrides=[{"match": f"sasl:{ALICE}", "action": "block", "reason": "ticket"}])
        d.proc.send_signal(signal.SIGHUP)
        assert d.notifications(until="READY=1")[-2:] == ["RELOADING=1", "READY=1"]
        s.sendall(request())
        assert read_replies(s, 1)[0].startswith(b"action=REJECT 5.7.1 ")

    # A broken file on SIGHUP: refused with one line, the running config stays.
    d.path.write_text('[policyd]\nlisten = "nonsense"\n')
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("reload refused, keeping the running config")
    assert "policyd.listen" in d.stderr()
    assert d.ask(request())[0].startswith(b"action=REJECT ")

    # SIGTERM while a request is half sent: it is answered, then the process exits 0.
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(request(sasl_username="bob@customer.example")[:60])
        time.sleep(0.5)  # read by the server: the connection is busy, not idle
        d.proc.send_signal(signal.SIGTERM)
        d.wait_log("draining")
        s.sendall(request(sasl_username="bob@customer.example")[60:])
        assert read_until_closed(s) == b"action=DUNNO\n\n"
    assert d.proc.wait(30) == 0
    assert "STOPPING=1" in d.notifications(until="STOPPING=1")
    assert "stopped" in d.stderr()


@pytest.mark.integration
def test_a_second_sigterm_exits_at_once(daemons: list[Daemon], tmp_path: Path) -> None:
    d = start(daemons, tmp_path)
    d.notifications(until="READY=1")
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(request()[:30])  # a request in flight holds the drain (30 s)
        time.sleep(0.5)
        d.proc.send_signal(signal.SIGTERM)
        d.wait_log("draining")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(10) == 1
        assert time.monotonic() - t0 < 5
    assert "exiting at once" in d.stderr()


@pytest.mark.integration
def test_bad_config_exits_78_with_one_line(daemons: list[Daemon], tmp_path: Path) -> None:
    d = start(daemons, tmp_path, policyd={"default_action": "PERMIT"})
    assert d.proc.wait(30) == 78
    lines = [ln for ln in d.stderr().splitlines() if ln.strip()]
    assert len(lines) == 1 and "policyd.default_action" in lines[0], lines


@pytest.mark.integration
def test_busy_port_exits_69(daemons: list[Daemon], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        d = start(daemons, tmp_path,
                  policyd={"listen": f"tcp:{port}:interface=127.0.0.1"})
        assert d.proc.wait(30) == 69
    assert "cannot listen" in d.stderr()


def _milter_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.integration
def test_serve_runs_the_milter_beside_and_prints_the_postfix_lines(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    milter_port, map_port = free_port(), free_port()
    d = start(daemons, tmp_path, "serve",
              milter={"enabled": True, "socket": f"inet:{milter_port}@127.0.0.1",
                      "attach_listen": f"tcp:{map_port}:interface=127.0.0.1"})
    assert d.notifications(until="READY=1")[-1] == "READY=1"  # only once all are up
    assert _milter_accepts(milter_port)
    assert d.ask(request()) == [b"action=DUNNO\n\n"]
    # smtpd_milter_maps: a client never seen gets no milter (the policy server sees it)
    with socket.create_connection(("127.0.0.1", map_port), timeout=10) as conn:
        conn.sendall(b"18:milters 192.0.2.44,")
        assert conn.recv(100) == b"10:OK DISABLE,"
    out = d.stdout()
    assert f"check_policy_service {{ inet:127.0.0.1:{d.port}," in out
    assert f"smtpd_milters = inet:127.0.0.1:{milter_port}" in out
    assert f"smtpd_milter_maps = socketmap:inet:127.0.0.1:{map_port}:milters" in out
    assert "smtpd_end_of_data_restrictions" in out
    assert "milter_default_action = accept" in out
    os.killpg(d.proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground group
    assert d.proc.wait(30) == 0
    assert not _milter_accepts(milter_port)
    assert not _milter_accepts(map_port)
    assert "milter stopped" in d.stderr()


@pytest.mark.integration
@pytest.mark.parametrize("taken", ["milter", "map"])
def test_serve_with_a_milter_port_taken_says_so_and_never_reports_ready(
    daemons: list[Daemon], tmp_path: Path, taken: str
) -> None:
    with socket.socket() as other:  # another program already listens on that port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        milter = {"enabled": True, "socket": f"inet:{port}@127.0.0.1"}
        if taken == "map":  # the milter map (smtpd_milter_maps), beside a free milter port
            milter = {"enabled": True, "socket": f"inet:{free_port()}@127.0.0.1",
                      "attach_listen": f"tcp:{port}:interface=127.0.0.1"}
        d = start(daemons, tmp_path, "serve", milter=milter)
        assert d.proc.wait(30) == 69
    d.notify.settimeout(0.2)
    with pytest.raises(TimeoutError):
        d.notifications(until="READY=1")
    assert (f"cannot serve milter socket inet:{port}@127.0.0.1" if taken == "milter"
            else "milter map (smtpd_milter_maps) cannot listen") in d.stderr()
    assert "Traceback" not in d.stderr()


@pytest.mark.integration
def test_serve_without_the_milter_says_so(daemons: list[Daemon], tmp_path: Path) -> None:
    d = start(daemons, tmp_path, "serve")
    d.notifications(until="READY=1")
    assert "smtpd_milters" not in d.stdout()
    assert "check_policy_service" in d.stdout()
    assert d.stop() == 0


@pytest.mark.integration
@pytest.mark.parametrize("section", ["policyd", "api"])
def test_serve_with_its_policy_or_api_port_taken_never_reports_ready(
    daemons: list[Daemon], tmp_path: Path, section: str
) -> None:
    with socket.socket() as other:  # another program already listens there
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        d = start(daemons, tmp_path, "serve",
                  **{section: {"listen": f"tcp:{port}:interface=127.0.0.1"}})
        assert d.proc.wait(30) == 69
    d.notify.settimeout(0.2)
    with pytest.raises(TimeoutError):
        d.notifications(until="READY=1")
    assert "cannot listen" in d.stderr() and "Traceback" not in d.stderr()


@pytest.mark.integration
def test_a_feed_without_outcomes_warns_and_healthz_says_so_but_stays_200(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    import json
    import urllib.request

    log = tmp_path / "mail.log"
    log.write_text("")
    d = start(daemons, tmp_path, "serve",
              maillog={"source": "file", "path": str(log), "quiet_warning_seconds": 1.0,
                       "poll_seconds": 0.2})
    d.notifications(until="READY=1")
    d.wait_log(f"no delivery outcome from {log} for ")
    with urllib.request.urlopen(f"http://127.0.0.1:{d.api_port}/healthz", timeout=10) as r:
        assert r.status == 200
        health = json.loads(r.read())
    assert health["status"] == "ok"
    assert health["maillog"]["quiet"] is True and health["maillog"]["outcomes"] == 0
    assert health["maillog"]["path"] == str(log)
    assert "since start" in health["maillog"]["detail"]
    assert d.stderr().count("no delivery outcome from") == 1  # once per quiet spell
    assert d.stop() == 0


@pytest.mark.integration
def test_source_none_is_said_at_start_up(daemons: list[Daemon], tmp_path: Path) -> None:
    d = start(daemons, tmp_path, "serve")
    d.notifications(until="READY=1")
    assert "no delivery outcomes are read" in d.stderr()
    assert d.stop() == 0


@pytest.mark.integration
def test_the_readmes_curl_lines_work(daemons: list[Daemon], tmp_path: Path) -> None:
    import json
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    d = start(daemons, tmp_path, "serve")
    d.notifications(until="READY=1")
    base = f"http://127.0.0.1:{d.api_port}/senders"

    def curl(*args: str) -> Any:
        out = subprocess.run(["curl", "-sS", *args], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return json.loads(out)

    # `curl -d` labels its body a form; JSON in it, or reason= and who= fields, both work.
    held = curl("-d", '{"reason": "ticket 4411", "who": "alice"}', f"{base}/ip:192.0.2.7/hold")
    assert held["action"] == "hold" and held["change"]["new"] == "held"
    freed = curl("-d", "reason=cleaned the PC", "-d", "who=bob",
                 f"{base}/ip:192.0.2.7/release")
    assert freed["action"] == "release"
    deadline = time.monotonic() + 20  # the audit trail is written at the next flush
    while "audit" not in (detail := curl(f"{base}/ip:192.0.2.7")) and (
            time.monotonic() < deadline):
        time.sleep(0.2)
    assert [a["who"] for a in detail["audit"]][-2:] == ["alice", "bob"]
    assert d.stop() == 0
