"""A crash of `extrusion serve` (libmilter's SIGSEGV, a SIGKILL) under its systemd unit's
restart policy: back within a bounded time, the policy server answering, nothing lost.

The restart loop is the unit's own: `Restart=` and `RestartSec=` are read from
conf/systemd/extrusion.service and applied as systemd does (a death by a
signal other than SIGHUP, SIGINT, SIGTERM or SIGPIPE, or a non-zero exit, is
a failure; the process is started again RestartSec later). The first crash
is the real one, libmilter's own (docs/libmilter-getsymval-report.md), sent
over the milter socket; the second a SIGKILL. A log the feed follows keeps
growing throughout: at the end every message and every bounced recipient is in
the store exactly once, and the "bounced" counters add up.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from extrusion_dev.crashfeed import appender, caught_up, customer_traffic, lost_and_doubled, stored

from .conftest import free_port
from .helpers import toml_text
from .milterwire import Closed, Session
from .test_feed_crash import EXE, MESSAGES, MTA, WRITE_SECONDS

pytestmark = pytest.mark.integration

UNIT = Path(__file__).resolve().parent.parent / "conf" / "systemd" / "extrusion.service"
# From the death to the policy server's first answer: RestartSec plus a start-up, on a
# loaded 2-core machine. Postfix meanwhile applies default_action (README, "When it fails").
BACK_WITHIN_SECONDS = 30.0
CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}
CRASH_SESSIONS = 40
CATCH_UP_SECONDS = 60.0


def unit_restart_policy() -> tuple[str, float]:
    text = UNIT.read_text()
    restart = re.search(r"^Restart=(\S+)", text, re.M)
    sec = re.search(r"^RestartSec=(\d+(?:\.\d+)?)(ms|s)?$", text, re.M)
    assert restart and sec, "the unit restarts the service"
    seconds = float(sec.group(1)) / (1000 if sec.group(2) == "ms" else 1)
    return restart.group(1), seconds


class Supervisor(threading.Thread):
    """What systemd does for the unit: start it, and start it again after a failure."""

    def __init__(self, config: Path, tmp: Path, restart: str, restart_sec: float) -> None:
        super().__init__(daemon=True)
        assert restart in ("on-failure", "always", "on-abnormal")
        self.config, self.tmp, self.restart_sec = config, tmp, restart_sec
        self.deaths: list[tuple[int, float]] = []  # (returncode, monotonic time)
        self.stopping = threading.Event()
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        n = len(self.deaths)
        with open(self.tmp / f"serve-{n}.log", "wb") as log:
            return subprocess.Popen([EXE, "serve", "--config", str(self.config)],
                                    stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)

    def run(self) -> None:
        while not self.stopping.is_set():
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            self.deaths.append((code, time.monotonic()))
            if code == 0 or (code < 0 and -code in CLEAN_SIGNALS):
                return  # not a failure: systemd would not restart it either
            time.sleep(self.restart_sec)
            self.proc = self._start()

    def stop(self) -> int:
        self.stopping.set()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                      b"client_address=10.0.0.1\nsender=a@example.net\n"
                      b"recipient=b@example.org\n\n")
            return s.recv(4096).startswith(b"action=")
    except OSError:
        return False


def _back_after(sup: Supervisor, port: int, deaths: int) -> float:
    """Seconds from the `deaths`-th death to the first policy answer after it."""
    deadline = time.monotonic() + 120
    while len(sup.deaths) < deaths:
        assert time.monotonic() < deadline, "the process did not die"
        time.sleep(0.02)
    while not _answers(port):
        assert time.monotonic() < deadline, "the policy server did not come back"
        time.sleep(0.05)
    return time.monotonic() - sup.deaths[deaths - 1][1]


def _crash_libmilter(port: int, sup: Supervisor) -> None:
    """libmilter's own defect: a macro frame with a name and no value, then MAIL."""
    for _ in range(CRASH_SESSIONS):
        try:
            s = Session.open(("127.0.0.1", port), timeout=1.0)
        except (Closed, OSError):
            return
        try:
            s.connect()
            s.helo(b"pc.example.net")
            s.macro(b"M", b"{auth_authen}")
            s.mail(b"<a@example.net>")
        except (Closed, OSError):
            pass
        finally:
            s.close()
        if sup.deaths:
            return
        time.sleep(0.05)


def _milter_answers(port: int) -> bool:
    """libmilter negotiates the protocol (its options reply) on a new connection."""
    try:
        s = Session.open(("127.0.0.1", port), timeout=2.0)
    except (Closed, OSError):
        return False
    s.close()
    return True


def test_serve_crashes_come_back_under_the_unit_policy_and_lose_nothing(
        tmp_path: Path) -> None:
    restart, restart_sec = unit_restart_policy()
    assert restart_sec <= 2.0  # a fast restart: mail passes unjudged meanwhile
    url = f"sqlite:///{tmp_path / 'extrusion.db'}"
    sent = customer_traffic(16, MESSAGES, WRITE_SECONDS)
    log = tmp_path / "mail.log"
    log.touch()
    policy, milter = free_port(), free_port()
    config = tmp_path / "extrusion.toml"
    config.write_text(toml_text({
        "general": {"hostname": MTA, "log_level": "info"},
        "store": {"url": url, "spool_dir": str(tmp_path / "spool")},
        "policyd": {"listen": f"tcp:{policy}:interface=127.0.0.1", "hold_queued_mail": False},
        "api": {"listen": f"tcp:{free_port()}:interface=127.0.0.1"},
        "milter": {"socket": f"inet:{milter}@127.0.0.1",
                   "attach_listen": f"tcp:{free_port()}:interface=127.0.0.1"},
        "maillog": {"source": "file", "path": str(log), "start_at": "beginning",
                    "poll_seconds": 0.2},
    }))

    sup = Supervisor(config, tmp_path, restart, restart_sec)
    sup.start()
    writer = appender(log, sent.lines, WRITE_SECONDS)
    try:
        deadline = time.monotonic() + 60
        while not (_answers(policy) and _milter_answers(milter)):
            assert time.monotonic() < deadline and not sup.deaths, "serve did not start"
            time.sleep(0.1)
        writer.start()
        time.sleep(5)
        _crash_libmilter(milter, sup)
        segv_back = _back_after(sup, policy, 1)
        assert sup.deaths[0][0] == -signal.SIGSEGV
        time.sleep(3)
        sup.proc.send_signal(signal.SIGKILL)
        kill_back = _back_after(sup, policy, 2)
        assert sup.deaths[1][0] == -signal.SIGKILL
        assert segv_back < BACK_WITHIN_SECONDS and kill_back < BACK_WITHIN_SECONDS
        assert _milter_answers(milter)
        assert writer.is_alive()  # both crashes fell while the log grew
        writer.join(timeout=WRITE_SECONDS * 3)
        assert caught_up(url, lambda: log.stat().st_size, CATCH_UP_SECONDS)
    finally:
        assert sup.stop() == 0
    assert len(sup.deaths) == 2, sup.deaths
    lost, doubled = lost_and_doubled(sent, stored(url, MTA, sent.keys))
    assert not any(lost.values()) and not any(doubled.values()), (lost, doubled)
