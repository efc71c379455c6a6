"""Hostile peers on the milter socket, spoken to in raw milter protocol (tests/milterwire.py).

What miltertest cannot send: malformed macro frames, callbacks in the wrong
order, empty frames, non-UTF-8 host names, HELOs and header names. A real
`extrusion milter` process serves them; its log is read afterwards.
"""

from __future__ import annotations

import grp
import os
import pwd
import random
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from extrusion.milter.dispatch import HOSTILE_LINES_PER_WINDOW

from .conftest import free_port
from .milterwire import BODY, EOH, EOM, NR_BODY, NR_EOH, Closed, Session
from .test_milter_integration import EXTRUSION, MilterProcess, running, sqlite_url, wait_stored

pytestmark = pytest.mark.integration

# libmilter's defect needs a few sessions to hit unmapped memory; the issue saw < 12.
CRASH_SESSIONS = 40
FUZZ_SESSIONS = 120
FUZZ_SEED = 14
REPLY_SECONDS = 0.1  # libmilter ignores frames out of order: don't wait long for a reply
BAD = [b"\xff\xfe", b"caf\xe9", b"\xc3", b"\x80\x80", b"ok", b"", b"\x1b[2J"]


def test_malformed_macro_frame_crashes_libmilter(tmp_path: Path) -> None:
    """The defect the socket's permissions guard against (README, "libmilter's macro
    defect"): a macro frame with a name and no value, then MAIL, and libmilter's
    smfi_getsymval reads past its array. When this test fails, libmilter is fixed."""
    milter = MilterProcess(tmp_path, sqlite_url(tmp_path))
    milter.start()
    assert milter.proc is not None
    try:
        for _ in range(CRASH_SESSIONS):
            try:
                s = Session.open(("127.0.0.1", milter.port))
            except (Closed, OSError):
                break
            try:
                s.connect()
                s.helo(b"pc.example.net")
                s.macro(b"M", b"{auth_authen}")  # a name, no value: an odd number of strings
                s.mail(b"<a@example.net>")
            except (Closed, OSError):
                pass
            finally:
                s.close()
            if milter.proc.poll() is not None:
                break
        milter.proc.wait(10)
    finally:
        if milter.proc.poll() is None:
            milter.proc.kill()
            milter.proc.wait()
    assert milter.proc.returncode == -signal.SIGSEGV, milter.log()


def _hostile_session(port: int, rnd: random.Random) -> None:
    def bad() -> bytes:
        return rnd.choice(BAD) + rnd.choice(BAD)

    steps = {
        "connect": lambda s: s.connect(bad()),
        "helo": lambda s: s.helo(bad()),
        "mail": lambda s: s.mail(b"<" + bad() + b"@example.net>", b"SIZE=" + bad()),
        "rcpt": lambda s: s.rcpt(b"<" + bad() + b"@example.org>"),
        "header": lambda s: s.header(bad(), bad()),
        "eoh": lambda s: s.step(EOH, b"", NR_EOH),
        "body": lambda s: s.step(BODY, bad(), NR_BODY),
        "eom": lambda s: s.step(EOM, b""),
        "empty": lambda s: s.sock.sendall(b"\0\0\0\0"),
    }
    names = list(steps)
    # Half the sessions in protocol order, half shuffled and cut short.
    order = names if rnd.random() < 0.5 else rnd.sample(names, rnd.randint(1, len(names)))
    try:
        s = Session.open(("127.0.0.1", port), timeout=REPLY_SECONDS)
    except (Closed, OSError):
        return
    try:
        for name in order:
            steps[name](s)
    except (Closed, OSError):
        pass
    finally:
        s.close()


def test_hostile_sessions_log_one_line_each_and_no_traceback(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    with running(tmp_path, url) as milter:
        # A HELO and a host name that are not UTF-8 still reach the store, escaped.
        s = Session.open(("127.0.0.1", milter.port))
        s.macro(b"C", b"{client_addr}", b"192.0.2.77")
        s.connect(b"bot\xff.example.net", b"192.0.2.77")
        s.helo(b"\xff\xfebot")
        s.macro(b"M", b"i", b"QHOSTILE1")
        assert s.mail(b"<bot@example.net>") == b"c"
        assert s.rcpt(b"<x@example.org>") == b"c"
        s.header(b"Subject", b"hi")
        s.macro(b"E", b"i", b"QHOSTILE1")
        assert s.step(EOM, b"") == b"c"
        s.close()
        (msg,) = wait_stored(url, "ip:192.0.2.77", {"QHOSTILE1"})
        assert msg.helo == "\\xff\\xfebot"
        # Callbacks with no session object behind them (no negotiation, no CONNECT).
        s = Session.open(("127.0.0.1", milter.port))
        s.sock.close()
        rnd = random.Random(FUZZ_SEED)
        for _ in range(FUZZ_SESSIONS):
            _hostile_session(milter.port, rnd)
        time.sleep(0.5)  # let the last lines reach the log
        log = milter.log()
    assert "Traceback" not in log
    assert "AttributeError" not in log
    bare = [ln for ln in log.splitlines() if ln.startswith("UnicodeDecodeError")]
    assert bare == []
    assert "client=192.0.2.77 callback=helo: value is not UTF-8 (\\xff\\xfebot)" in log
    assert "callback=header: value is not UTF-8" in log
    assert "callback=connect: value is not UTF-8" in log
    hostile = [ln for ln in log.splitlines() if "milter session client=" in ln]
    assert 3 <= len(hostile) <= HOSTILE_LINES_PER_WINDOW  # rate-limited, not one per session


def test_unix_socket_gets_its_mode_and_group_before_ready(tmp_path: Path) -> None:
    """Only the MTA may reach the socket: mode 0660 and the MTA's group, set at start-up."""
    milter = MilterProcess(tmp_path, sqlite_url(tmp_path))
    # Outside the test directory (0700): another user must get as far as the socket.
    sockdir = Path(tempfile.mkdtemp(prefix="extrusion-sock-"))
    sockdir.chmod(0o755)
    path = sockdir / "milter.sock"
    group = grp.getgrgid(os.getgid()).gr_name
    milter.socket = f"unix:{path}"
    milter.config.write_text(milter.config.read_text().replace(
        f'socket = "inet:{milter.port}@127.0.0.1"',
        f'socket = "{milter.socket}"\nsocket_mode = 0o660\nsocket_group = "{group}"'))
    try:
        _check_socket(milter, path)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def _check_socket(milter: MilterProcess, path: Path) -> None:
    with _started(milter):
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == os.getgid()
        if os.geteuid() == 0 and shutil.which("runuser"):
            # A local user outside the group cannot connect, so cannot send a malformed
            # frame; the same user can once the mode lets everyone in (the control).
            assert "PermissionError" in _connect_as_nobody(path)
            os.chmod(path, 0o666)
            assert _connect_as_nobody(path) == ""
            os.chmod(path, 0o660)
        s = Session.open(str(path))  # the owner (standing in for the MTA) can
        assert s.connect() in (None, b"c")
        s.close()


def _connect_as_nobody(path: Path) -> str:
    """stderr of a connection attempt by the unprivileged user `nobody` ("" if it worked)."""
    probe = f"import socket; socket.socket(socket.AF_UNIX).connect({str(path)!r})"
    done = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", probe],
                          capture_output=True, text=True, timeout=30)
    return done.stderr


@contextmanager
def _started(milter: MilterProcess) -> Iterator[MilterProcess]:
    milter.start()
    try:
        yield milter
    finally:
        status = milter.stop()
    assert status == 0, milter.log()


def test_socket_group_that_does_not_exist_is_one_line_before_ready(tmp_path: Path) -> None:
    milter = MilterProcess(tmp_path, sqlite_url(tmp_path))
    milter.config.write_text(milter.config.read_text().replace(
        f'socket = "inet:{milter.port}@127.0.0.1"',
        f'socket = "unix:{tmp_path}/m.sock"\nsocket_group = "no-such-group-xyz"'))
    done = subprocess.run([str(EXTRUSION), "milter", "--config", str(milter.config)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 69
    assert "no group 'no-such-group-xyz'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("serve", [False, True], ids=["milter", "serve"])
def test_a_missing_socket_directory_is_one_line_with_the_command_that_creates_it(
    tmp_path: Path, serve: bool
) -> None:
    """The directory decides who may reach the socket before its mode is set, so it is
    the administrator's to create: refused at start, never made with a guessed owner."""
    milter = MilterProcess(tmp_path, sqlite_url(tmp_path))
    missing = tmp_path / "postfix-queue" / "extrusion"
    milter.config.write_text(milter.config.read_text().replace(
        f'socket = "inet:{milter.port}@127.0.0.1"',
        f'socket = "unix:{missing}/milter.sock"\nsocket_group = "postfix"') + (
        f'[policyd]\nlisten = "tcp:{free_port()}:interface=127.0.0.1"\n'
        f'[api]\nlisten = "tcp:{free_port()}:interface=127.0.0.1"\n'
        f'[maillog]\nsource = "none"\n'))
    command = ["serve"] if serve else ["milter"]
    done = subprocess.run([str(EXTRUSION), *command, "--config", str(milter.config)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert done.returncode == 69, done.stderr  # EX_UNAVAILABLE, as for a port taken
    assert (f"the socket's directory {missing} does not exist; create it (as root: "
            f"install -d -m 0750 -o {user} -g postfix {missing})") in done.stderr
    assert "Traceback" not in done.stderr
    assert "another program" not in done.stderr
    assert not missing.exists()
