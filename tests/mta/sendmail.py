"""A real Sendmail on loopback, unpacked from Debian's packages, for the Sendmail path.

Debian will not install sendmail beside postfix, so the binaries come from
`apt-get download sendmail-bin sendmail-cf` + `dpkg -x` into build/sendmail
(kept between runs). The .cf is built with m4 from conf/sendmail/extrusion.mc
the way a user would build it, with test lines added (loopback port, smart
host = the remote side, queue and files in a temp dir).

Sendmail logs only through syslog(3), i.e. to /dev/log, and wants a fully
qualified host name. So it runs in its own mount and UTS namespaces
(`unshare -m -u`): /dev there is a copy whose `log` is a datagram socket of
this harness, /etc/hosts names the test host, and the host name is
sm.extrusion.test. The harness writes the datagrams to `maillog` in the
classic syslog form, which extrusion's log feed follows. Nothing of this
is visible outside the namespace.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.postfix_harness import REPO, SBIN_PATH, LoggedMta

CACHE = REPO / "build" / "sendmail"
PACKAGES = ("sendmail-bin", "sendmail-cf")
SENDMAIL_REL = Path("usr/libexec/sendmail/sendmail")
MAKEMAP_REL = Path("usr/libexec/sendmail/makemap")
CF_M4_REL = Path("usr/share/sendmail/cf/m4/cf.m4")
HOSTNAME = "sm.extrusion.test"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
DEVICES = ("null", "zero", "random", "urandom", "tty")

# The shipped socket; the tests wire inet on loopback instead (no /run/extrusion here).
SNIPPET_MILTER = "unix:/run/extrusion/milter.sock"
SNIPPET_DAEMON = "Port=smtp, Addr=0.0.0.0"
_SYSLOG = re.compile(rb"^<(\d+)>(\w{3} [ \d]\d \d\d:\d\d:\d\d) (.*)$", re.S)
_OUTCOME = re.compile(r"sendmail\[\d+\]: (?P<qid>\w+): to=<?(?P<rcpt>[^>,]*)>?,.*"
                      r"dsn=(?P<dsn>\d\.\d+\.\d+),(?:.*?,)? stat=(?P<stat>.*)$")

# Lines added to the shipped .mc (before the MAILER lines) for the test instance.
_TEST_MC = """\
define(`SMART_HOST', `[127.0.0.1]')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {relay_port}')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {relay_port}')dnl
define(`QUEUE_DIR', `{root}/mqueue')dnl
define(`confPID_FILE', `{root}/sendmail.pid')dnl
define(`ALIAS_FILE', `{root}/aliases')dnl
define(`confCW_FILE', `-o {root}/local-host-names')dnl
define(`confDOMAIN_NAME', `{hostname}')dnl
define(`confSERVICE_SWITCH_FILE', `{root}/service.switch')dnl
define(`confHOSTS_FILE', `{root}/hosts')dnl
define(`confDONT_BLAME_SENDMAIL', `MapInUnsafeDirPath')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confSTATUS_FILE', `{root}/statistics')dnl
define(`confREFUSE_LA', `100')dnl
define(`confQUEUE_LA', `100')dnl
define(`confTO_CONNECT', `5s')dnl
define(`confDELIVERY_MODE', `background')dnl
FEATURE(`accept_unresolvable_domains')dnl
"""

_RUN_SH = """\
set -e
for d in {devices}; do touch {root}/dev/$d; mount --bind /dev/$d {root}/dev/$d; done
touch {root}/dev/log
mount --bind {root}/log.sock {root}/dev/log
mount --rbind {root}/dev /dev
mount --bind {root}/hosts /etc/hosts
hostname {hostname}
exec {sendmail} -C {root}/sendmail.cf -bd -q1s
"""


class SendmailUnavailable(RuntimeError):
    """Sendmail cannot be run here; the message says exactly why."""


def unpacked(cache: Path = CACHE) -> Path:
    """The directory the Debian packages are unpacked in, downloading them once."""
    root = cache / "root"
    if (root / SENDMAIL_REL).exists() and (root / CF_M4_REL).exists():
        return root
    for tool in ("apt-get", "dpkg", "unshare", "m4"):
        if shutil.which(tool, path=f"{SBIN_PATH}:{os.environ.get('PATH', '')}") is None:
            raise SendmailUnavailable(f"{tool} not found (Debian package "
                                      f"{'m4' if tool == 'm4' else 'util-linux/dpkg/apt'})")
    cache.mkdir(parents=True, exist_ok=True)

    def download() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["apt-get", "download", *PACKAGES], cwd=cache,
                              capture_output=True, text=True, timeout=300, check=False)

    proc = download()
    if proc.returncode != 0:
        # A machine whose packages were installed long ago may have no package lists.
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300,
                       check=False)
        proc = download()
    debs = sorted(cache.glob("*.deb"))
    if proc.returncode != 0 or len(debs) < len(PACKAGES):
        raise SendmailUnavailable(f"apt-get download {' '.join(PACKAGES)} failed: "
                                  f"{proc.stderr.strip()[-500:]}")
    for deb in debs:
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, timeout=120)
    if not (root / SENDMAIL_REL).exists():
        raise SendmailUnavailable(f"no {SENDMAIL_REL} in the unpacked packages")
    return root


def render_mc(text: str, *, port: int, milter_port: int, root: Path, relay_port: int) -> str:
    """conf/sendmail/extrusion.mc with the test's addresses and files."""
    text = text.replace(SNIPPET_MILTER, f"inet:{milter_port}@127.0.0.1")
    text = text.replace(SNIPPET_DAEMON, f"Port={port}, Addr=127.0.0.1")
    text = text.replace("FEATURE(`access_db')",
                        f"FEATURE(`access_db', `hash -T<TMPF> -o {root}/access')")
    extra = _TEST_MC.format(root=root, relay_port=relay_port, hostname=HOSTNAME)
    return text.replace("MAILER(`local')dnl", extra + "MAILER(`local')dnl", 1)


@dataclass(frozen=True)
class SendmailOutcome:
    queue_id: str
    recipient: str
    dsn: str
    stat: str


@dataclass
class SendmailInstance(LoggedMta):
    """One Sendmail daemon: `start()`, `send()`, `queue()`, `stop()`."""

    root: Path
    smtpd_port: int
    relay_port: int
    milter_port: int
    policy_port: int  # unused by Sendmail; kept so the daemons' config has a free port
    dist: Path = CACHE / "root"
    _log_sock: socket.socket | None = None
    _log_thread: threading.Thread | None = None
    _log_file: Any = None
    _stop_logging: threading.Event = field(default_factory=threading.Event)

    @property
    def queue_dir(self) -> Path:
        return self.root / "mqueue"

    @property
    def config_dir(self) -> Path:
        return self.root

    @property
    def sendmail(self) -> Path:
        return self.dist / SENDMAIL_REL

    # --- set-up ---

    def build(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "dev").mkdir(exist_ok=True)
        self.queue_dir.mkdir(mode=0o700, exist_ok=True)
        (self.root / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME} sm\n")
        (self.root / "service.switch").write_text("hosts files\naliases files\n")
        (self.root / "aliases").write_text("")
        (self.root / "local-host-names").write_text("")
        # customers relay: the whole loopback range stands for the ISP's customer network
        (self.root / "access").write_text("Connect:127\tRELAY\n")
        mc = render_mc((REPO / "conf" / "sendmail" / "extrusion.mc").read_text(),
                       port=self.smtpd_port, milter_port=self.milter_port, root=self.root,
                       relay_port=self.relay_port)
        (self.root / "sendmail.mc").write_text(mc)
        with (self.root / "sendmail.cf").open("w") as cf:
            subprocess.run(["m4", str(self.dist / CF_M4_REL), str(self.root / "sendmail.mc")],
                           stdout=cf, check=True, timeout=60)
        with (self.root / "access").open() as src:
            subprocess.run([str(self.dist / MAKEMAP_REL), "-C", str(self.root / "sendmail.cf"),
                            "hash", str(self.root / "access")], stdin=src, check=True,
                           timeout=60, capture_output=True)

    def start(self) -> SendmailInstance:
        self.build()
        self._start_syslog()
        script = _RUN_SH.format(devices=" ".join(DEVICES), root=self.root, hostname=HOSTNAME,
                                sendmail=self.sendmail)
        (self.root / "run.sh").write_text(script)
        proc = subprocess.run(["unshare", "-m", "-u", "sh", str(self.root / "run.sh")],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            self.stop()
            raise SendmailUnavailable(f"sendmail did not start ({proc.returncode}): "
                                      f"{proc.stderr.strip()}")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.smtpd_port), timeout=1) as s:
                s.recv(512)  # read the banner so the daemon sees an orderly close
                s.sendall(b"QUIT\r\n")
                return self
            time.sleep(0.1)
        self.stop()
        raise SendmailUnavailable(f"sendmail did not listen on 127.0.0.1:{self.smtpd_port}:\n"
                                  f"{self.log_text()[-2000:]}")

    def _start_syslog(self) -> None:
        path = self.root / "log.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(0.2)
        self._log_sock = sock
        self._log_file = self.maillog.open("ab", buffering=0)
        self._stop_logging.clear()
        self._log_thread = threading.Thread(target=self._syslog_loop, name="sendmail-syslog",
                                            daemon=True)
        self._log_thread.start()

    def _syslog_loop(self) -> None:
        assert self._log_sock is not None
        while not self._stop_logging.is_set():
            try:
                data = self._log_sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            m = _SYSLOG.match(data.rstrip(b"\n\0"))
            if m is None:
                continue
            # classic syslog file form: "Mmm dd hh:mm:ss host tag[pid]: message"
            self._log_file.write(m.group(2) + b" sm " + m.group(3) + b"\n")

    def pids(self) -> list[int]:
        """Sendmail processes of this instance: they run in its queue directory."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "cwd") == str(self.queue_dir):
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def stop(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._stop_logging.set()
        if self._log_thread is not None:
            self._log_thread.join(5)
            self._log_thread = None
        if self._log_sock is not None:
            self._log_sock.close()
            self._log_sock = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # --- use (sending and log_text: LoggedMta) ---

    def outcomes(self, queue_id: str) -> list[SendmailOutcome]:
        out = []
        for line in self.log_text().splitlines():
            m = _OUTCOME.search(line)
            if m and m.group("qid") == queue_id:
                out.append(SendmailOutcome(queue_id, m.group("rcpt"), m.group("dsn"),
                                           m.group("stat")))
        return out

    def wait_outcomes(self, queue_id: str, count: int, timeout: float = 30.0
                      ) -> list[SendmailOutcome]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.outcomes(queue_id)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue_id}: {len(found)} of {count} outcomes logged")
            time.sleep(0.1)

    def queue(self, quarantined: bool = False) -> list[str]:
        """Queue ids in the queue, or in quarantine.

        Read from the queue directory itself: Sendmail keeps a message's
        control file as `qfID`, renamed `hfID` while it is quarantined. (`mailq`
        run outside the daemon's namespace stalls resolving this host's name.)
        """
        prefix = "hf" if quarantined else "qf"
        return sorted(p.name[2:] for p in self.queue_dir.glob(prefix + "*"))

    def release(self, queue_id: str) -> None:
        """Take a message out of quarantine and deliver it (`sendmail -qQ -Q -qI`)."""
        self._run_inside([str(self.sendmail), "-C", str(self.root / "sendmail.cf"),
                          "-qQ", "-Q", f"-qI{queue_id}"])

    def _run_inside(self, argv: list[str]) -> None:
        """Run a sendmail command with the daemon's view of the host name and /etc/hosts."""
        script = (f"mount --bind {self.root}/hosts /etc/hosts\nhostname {HOSTNAME}\n"
                  + " ".join(shlex.quote(a) for a in argv) + "\n")
        subprocess.run(["unshare", "-m", "-u", "sh", "-e", "-c", script], check=True,
                       timeout=30, capture_output=True)


@contextlib.contextmanager
def running_sendmail(relay_port: int) -> Iterator[SendmailInstance]:
    from tests.conftest import free_port

    dist = unpacked()
    root = Path(tempfile.mkdtemp(prefix="extrusion-sendmail-"))
    inst = SendmailInstance(root, free_port(), relay_port, free_port(), free_port(), dist)
    try:
        yield inst.start()
    finally:
        inst.stop()
        shutil.rmtree(root, ignore_errors=True)
