"""`extrusion milter` as a real process, driven by a real milter client (`miltertest`).

The daemon runs the installed command with a generated config (SQLite or
PostgreSQL store, free loopback port); the Lua scripts in tests/milter/ play
the MTA. Every reply is covered, hostile input, a clean stop on SIGTERM, the
store going away mid-run (mail keeps flowing, nothing is lost), and bad
start-up conditions.
"""

from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from extrusion.scoring.store import Store

from .conftest import PG_ADMIN_URL, REPO, free_port
from .helpers import missing, wait_for

pytestmark = pytest.mark.integration

LUA = REPO / "tests" / "milter"
MTA = "mta1.example"
EXTRUSION = Path(sys.executable).parent / "extrusion"
START_SECONDS = 30.0
STOP_SECONDS = 20.0

CONFIG = """
[general]
hostname = "{mta}"
[store]
url = "{url}"
spool_dir = "{tmp}/spool"
refresh_seconds = 0.3
busy_timeout_ms = 200
[milter]
socket = "inet:{port}@127.0.0.1"
add_header = true
rate_limits = true
[limits.tiny]
recipients_per_hour = 1
[[overrides]]
match = "sasl:blocked@example.net"
action = "block"
reason = "abuse desk ticket 1234"
[[overrides]]
match = "sasl:held@example.net"
action = "hold"
[[overrides]]
match = "sasl:tiny@example.net"
action = "limits"
limits = "tiny"
"""


@pytest.fixture(scope="module")
def miltertest_bin() -> str:
    path = shutil.which("miltertest")
    if path is None:
        missing("miltertest not installed (Debian package miltertest; make test installs it)")
    return path


class MilterProcess:
    """`extrusion milter --config FILE` with its log in the test directory."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp = tmp
        self.url = url
        self.port = free_port()
        self.socket = f"inet:{self.port}@127.0.0.1"
        self.config = tmp / "extrusion.toml"
        self.config.write_text(CONFIG.format(mta=MTA, url=url, tmp=tmp, port=self.port))
        self.log_path = tmp / "milter.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(EXTRUSION), "milter", "--config", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.wait_for_log("milter listening on", START_SECONDS)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.log():
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"milter exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not logged within {seconds}s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"milter did not stop within {STOP_SECONDS}s of SIGTERM:\n{self.log()}")


@contextmanager
def running(tmp: Path, url: str) -> Iterator[MilterProcess]:
    milter = MilterProcess(tmp, url)
    milter.start()
    try:
        yield milter
    finally:
        status = milter.stop()
    assert status == 0, milter.log()
    assert "milter stopped" in milter.log()


def sqlite_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'extrusion.db'}"


@pytest.fixture(scope="module")
def milter(tmp_path_factory: pytest.TempPathFactory,
           miltertest_bin: str) -> Iterator[MilterProcess]:
    """One daemon for the reply scenarios (each uses its own sender and queue id)."""
    tmp = tmp_path_factory.mktemp("milter")
    with running(tmp, sqlite_url(tmp)) as m:
        yield m


def run_script(milter: MilterProcess, script: str, **defines: str) -> None:
    args = ["miltertest", "-s", str(LUA / f"{script}.lua"),
            "-D", f"socket={milter.socket}", "-D", f"dir={LUA}"]
    for name, value in defines.items():
        args += ["-D", f"{name}={value}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (
        f"{script}.lua failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
        f"--- milter log ---\n{milter.log()}")


def stored_messages(url: str, sender: str) -> list[Any]:
    with Store(url, create=False) as store:
        return store.messages(sender)


def wait_stored(url: str, sender: str, queue_ids: set[str]) -> list[Any]:
    return wait_for(  # type: ignore[no-any-return]
        f"messages {sorted(queue_ids)} of {sender} in the store",
        lambda: (msgs := stored_messages(url, sender))
        and queue_ids <= {m.queue_id for m in msgs} and msgs,
    )


# --- every reply ---------------------------------------------------------------------------


def test_normal_customer_is_accepted_marked_and_recorded(milter: MilterProcess) -> None:
    run_script(milter, "accept", qid="QACCEPT1", login="alice@example.net")
    (msg,) = wait_stored(milter.url, "sasl:alice@example.net", {"QACCEPT1"})
    assert (msg.mta, msg.rcpt_count, msg.helo, msg.client_addr) == (
        MTA, 3, "pc1.example.net", "192.0.2.10")
    assert "QACCEPT1" not in milter.log()  # plain accepts are not logged


def test_blocked_sender_is_rejected(milter: MilterProcess) -> None:
    run_script(milter, "reject", qid="QREJECT1", login="blocked@example.net")
    milter.wait_for_log("decision sender=sasl:blocked@example.net queue_id=QREJECT1 "
                        "stage=mail action=reject state=blocked")


def test_sender_over_its_limit_is_tempfailed(milter: MilterProcess) -> None:
    run_script(milter, "tempfail", qid="QTEMP1", login="tiny@example.net")
    milter.wait_for_log("decision sender=sasl:tiny@example.net queue_id=QTEMP1 "
                        "stage=rcpt action=tempfail")
    (msg,) = wait_stored(milter.url, "sasl:tiny@example.net", {"QTEMP1"})
    assert [r.recipient for r in msg.recipients] == ["first@example.org"]


def test_held_sender_is_quarantined(milter: MilterProcess) -> None:
    run_script(milter, "hold", qid="QHOLD1", login="held@example.net")
    milter.wait_for_log("decision sender=sasl:held@example.net queue_id=QHOLD1 "
                        "stage=eom action=hold state=held")
    wait_stored(milter.url, "sasl:held@example.net", {"QHOLD1"})


def test_hostile_input_is_recorded_escaped_and_the_milter_keeps_serving(
    milter: MilterProcess,
) -> None:
    run_script(milter, "hostile", qid="QHOSTILE")
    (msg,) = wait_stored(milter.url, "sasl:j\\xf6rg", {"QHOSTILE"})
    assert msg.client_addr == "2001:db8::25"
    assert msg.envelope_from == "no-brackets@example.net"
    assert msg.helo == "\\xff\\xfebot"  # the last HELO, from Sendmail's copy in macro s
    rcpts = [r.recipient for r in msg.recipients]
    assert rcpts[:2] == ["\\xff\\xfe@example.org", "plain@example.org"]
    assert rcpts[2].endswith("...") and len(rcpts[2]) == 320  # with its marker, fits the column
    wait_stored(milter.url, "ip:192.0.2.10", {"QHOSTILEB"})
    with Store(milter.url, create=False) as store:
        row = store.sender("sasl:j\\xf6rg")
    assert row is not None
    examples = " ".join(row.findings["helo_anomalies"]["examples"])
    assert "\x1b" not in examples and "(helo_malformed)" in examples


def test_unix_socket(tmp_path: Path, miltertest_bin: str) -> None:
    url = sqlite_url(tmp_path)
    milter = MilterProcess(tmp_path, url)
    milter.socket = f"unix:{tmp_path / 'milter.sock'}"
    milter.config.write_text(milter.config.read_text().replace(
        f"inet:{milter.port}@127.0.0.1", milter.socket))
    milter.start()
    try:
        run_script(milter, "accept", qid="QUNIX1", login="alice@example.net")
    finally:
        assert milter.stop() == 0, milter.log()
    assert [m.queue_id for m in stored_messages(url, "sasl:alice@example.net")] == ["QUNIX1"]


# --- stopping ------------------------------------------------------------------------------


def test_sigterm_stops_cleanly_and_flushes(tmp_path: Path, miltertest_bin: str) -> None:
    url = sqlite_url(tmp_path)
    milter = MilterProcess(tmp_path, url)
    milter.start()
    run_script(milter, "accept", qid="QTERM1", login="alice@example.net")
    started = time.monotonic()
    assert milter.stop() == 0, milter.log()
    assert time.monotonic() - started < 10.0
    log = milter.log()
    assert "milter stopping" in log and "milter stopped" in log and "Traceback" not in log
    assert [m.queue_id for m in stored_messages(url, "sasl:alice@example.net")] == ["QTERM1"]


def test_sigterm_mid_session_closes_it_at_once_and_keeps_what_was_recorded(
    tmp_path: Path, miltertest_bin: str
) -> None:
    url = sqlite_url(tmp_path)
    milter = MilterProcess(tmp_path, url)
    milter.start()
    run_script(milter, "accept", qid="QTERM2", login="alice@example.net")
    client = subprocess.Popen(
        ["miltertest", "-s", str(LUA / "slow.lua"), "-D", f"socket={milter.socket}",
         "-D", f"dir={LUA}", "-D", "qid=QSLOW", "-D", "login=slow@example.net",
         "-D", "pause=8"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)  # MAIL and RCPT are answered in milliseconds; then it waits 8 s
        assert client.poll() is None
        started = time.monotonic()
        assert milter.stop() == 0, milter.log()
        assert time.monotonic() - started < 10.0
        out, _ = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    # libmilter stops serving open sessions with its socket: the MTA sees the
    # connection close and applies milter_default_action instead of waiting.
    # miltertest either reports the closed connection or dies writing to it.
    assert "answered" not in out, out
    assert "closed:" in out or client.returncode != 0, out
    assert "1 sessions in progress are left to the MTA" in milter.log()
    assert [m.queue_id for m in stored_messages(url, "sasl:alice@example.net")] == ["QTERM2"]


# --- the store goes away mid-run -------------------------------------------------------------


@contextmanager
def store_outage(url: str) -> Iterator[None]:
    """Make the store refuse writes for real while the milter runs, then bring it back."""
    if url.startswith("sqlite"):
        # Another process's write lock: the engine's writes time out after busy_timeout.
        db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            db.execute("BEGIN EXCLUSIVE")
            yield
            db.execute("ROLLBACK")
        finally:
            db.close()
        return
    import sqlalchemy

    name = url.rsplit("/", 1)[1]
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
        try:
            yield
        finally:
            with admin.connect() as conn:
                conn.execute(sqlalchemy.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()


def test_store_outage_mail_flows_and_events_are_replayed(
    tmp_path: Path, store_url: str, miltertest_bin: str
) -> None:
    with running(tmp_path, store_url) as milter:
        run_script(milter, "accept", qid="QBEFORE", login="alice@example.net")
        wait_stored(store_url, "sasl:alice@example.net", {"QBEFORE"})
        during = {f"QDURING{n}" for n in range(3)}
        with store_outage(store_url):
            for qid in sorted(during):  # every message still gets through at once
                started = time.monotonic()
                run_script(milter, "accept", qid=qid, login="alice@example.net")
                assert time.monotonic() - started < 5.0
            run_script(milter, "reject", qid="QDURINGR", login="blocked@example.net")
            milter.wait_for_log("store unavailable")  # the engine's next write failed...
            wait_for("spooled writes", lambda: list((tmp_path / "spool").glob("*")))  # ...kept
        milter.wait_for_log("store available again", 15.0)
        msgs = wait_stored(store_url, "sasl:alice@example.net", {"QBEFORE", *during})
        assert len(msgs) == 4  # each once: nothing lost, nothing doubled
    assert "QDURINGR" in milter.log()  # decisions went on from memory


# --- bad start-up conditions -----------------------------------------------------------------


def test_bad_config_is_one_line_and_exit_78(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[milter]\nsocket = "port 8890"\n')
    done = subprocess.run([str(EXTRUSION), "milter", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78
    assert done.stderr.strip().splitlines() == [
        f"extrusion: config error: {config}: milter.socket: "
        "not a milter socket (expected inet:PORT@HOST or unix:/path)"]


def test_socket_in_use_is_a_clear_error_and_exit_69(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        milter = MilterProcess(tmp_path, sqlite_url(tmp_path))
        config = milter.config.read_text().replace(str(milter.port), str(port))
        milter.config.write_text(config)
        done = subprocess.run([str(EXTRUSION), "milter", "--config", str(milter.config)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 69, done.stderr
    assert f"cannot serve milter socket inet:{port}@127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr
