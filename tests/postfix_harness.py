"""A throw-away Postfix instance on loopback for the integration tests and the demo.

One instance per test session (the `postfix` fixture) keeps the suite fast. It
runs as root with its own config, queue and data directories under a temp dir,
smtpd on a free 127.0.0.1 port, chroot off, `maillog_file` in the temp dir, and
relays everything to the remote side (`tests.smtp_remote`) on another loopback
port. It is wired with `conf/postfix/main.cf.snippet` and `master.cf.snippet`
the way a user would wire them, only with the addresses and paths substituted,
so while no extrusion daemon listens, it shows the fail-open path.

Helpers: `send()` over smtplib (returns the queue id), `wait_removed()` /
`outcomes()` from the log, `queue()` from `postqueue -j`, `flush()`,
`release()`, `postconf()` + reload. `stop()` leaves nothing running even
after a failure: it kills whatever still runs from the instance's queue
directory.
"""

from __future__ import annotations

import contextlib
import email.policy
import json
import os
import pty
import re
import select
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from tests.smtp_remote import RemoteSMTP

REPO = Path(__file__).resolve().parent.parent
CONF_POSTFIX = REPO / "conf" / "postfix"
SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# The addresses the shipped snippets use; the harness swaps in its own (the milter on
# loopback TCP, so that benchmarks and tests can point any milter at one port; the
# shipped relative unix path is wired for real in tests/test_milter_socket_postfix.py).
SNIPPET_MILTER = "unix:extrusion/milter.sock"
SNIPPET_POLICY = "inet:127.0.0.1:10040"
SNIPPET_MILTER_MAP = "inet:127.0.0.1:10041"
SNIPPET_MAILLOG = "/var/log/postfix.log"

MIN_VERSION = (3, 4)  # maillog_file and postlogd
START_TIMEOUT = 20.0
START_ATTEMPTS = 3  # starts on new ports when the smtpd port was taken (running_instance)
STOP_TIMEOUT = 10.0
FINAL_STATUSES = ("sent", "bounced", "expired")

_QUEUED_AS = re.compile(r"(?:queued as|^2\.0\.0) ([0-9A-Za-z]{8,20})\b")
_OUTCOME = re.compile(
    r"postfix/\S+\[\d+\]: (?P<qid>[0-9A-Za-z]+): to=<(?P<rcpt>[^>]*)>,.*?"
    r" dsn=(?P<dsn>\d\.\d+\.\d+), status=(?P<status>\w+)(?: \((?P<reply>.*)\))?$"
)

# Base main.cf of the test instance: everything that makes it a private, fast,
# loopback-only smarthost. The snippet from conf/ is appended to it.
_MAIN_CF = """\
# throw-away Postfix instance of the extrusion tests
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {root}
myhostname = smarthost.extrusion.test
mydomain = extrusion.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relay_port}
smtp_host_lookup = native
smtpd_peername_lookup = no
smtp_connect_timeout = 5s
smtpd_error_sleep_time = 0s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
biff = no
"""

# Base master.cf: Debian's services with chroot off and smtpd on the test port.
_MASTER_CF = """\
127.0.0.1:{smtpd_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
"""


class PostfixError(RuntimeError):
    """A postfix command failed; the message carries what it printed."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postfix_missing() -> str | None:
    """Why a throw-away Postfix cannot run here, or None if it can."""
    if shutil.which("postfix", path=SBIN_PATH) is None:
        return "postfix is not installed (Debian package postfix)"
    if os.geteuid() != 0:
        return "a throw-away Postfix instance needs root"
    version = postfix_version()
    if version < MIN_VERSION:
        return f"Postfix {version} is older than 3.4 (no maillog_file)"
    return None


def require_postfix() -> None:
    """Skip without Postfix; with CI=true fail instead, so CI cannot pass vacuously."""
    reason = postfix_missing()
    if reason is None:
        return
    if in_ci():
        pytest.fail(reason + " (CI=true: the Postfix integration tests are required)")
    pytest.skip(reason)


def postfix_version() -> tuple[int, ...]:
    out = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True,
                         text=True, check=True, env=_env()).stdout.strip()
    return tuple(int(p) for p in out.split(".") if p.isdigit())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{SBIN_PATH}:{env.get('PATH', '')}"
    env.pop("MAIL_CONFIG", None)
    return env


def run_with_tty(argv: Sequence[str], timeout: float = 60.0) -> tuple[int, str]:
    """Run a Postfix command with its stderr on a pseudo-terminal.

    Postfix commands print their errors only to a terminal (otherwise to syslog,
    which a test machine may not run); a pty makes "fatal: ..." visible.
    """
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=slave, env=_env(), close_fds=True)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            # A command that hangs silently (a Postfix daemon blocked on its log socket)
            # must not hold the read past the deadline: wait for output with a timeout.
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([master], [], [], left)[0]:
                proc.kill()
                break
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every holder of the slave side has closed it
                break
            if not data:
                break
            chunks.append(data)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
    return rc, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


# --- wiring the shipped snippets ----------------------------------------------------------


def render_snippet(name: str, substitutions: Mapping[str, str]) -> str:
    """A conf/postfix snippet with its addresses and paths replaced."""
    text = (CONF_POSTFIX / name).read_text()
    for old, new in substitutions.items():
        text = text.replace(old, new)
    return text


def merge_master_cf(base: str, snippet: str) -> str:
    """Add the snippet's active services to a master.cf, replacing same name+type entries.

    Chroot is switched off in every entry: the test instance has no chroot jail.
    """
    entries = _master_entries(base)
    for key, lines in _master_entries(snippet).items():
        entries[key] = lines
    out: list[str] = []
    for lines in entries.values():
        fields = lines[0].split()
        if len(fields) >= 8:
            fields[4] = "n"
        out.append("  ".join(fields))
        out.extend(lines[1:])
    return "\n".join(out) + "\n"


def set_main_cf(text: str, settings: Mapping[str, str]) -> str:
    """main.cf text with each of `settings` defined once, at the end.

    An earlier definition of the same parameter (and its continuation lines) is
    dropped rather than overridden: Postfix warns about an overridden entry in every
    process it starts, postlogd included, which sends that warning to its own socket
    before it reads from it. With the socket's queue already full of the other
    daemons' start-up lines (net.unix.max_dgram_qlen, 10 by default), that send never
    returns and every process that logs after it hangs with it.
    """
    kept: list[str] = []
    dropping = False
    for line in text.splitlines():
        if dropping and (not line.strip() or line[0].isspace()):
            continue  # Postfix continues a logical line on lines that start with whitespace
        name, eq, _ = line.partition("=")
        dropping = bool(eq) and not line[0].isspace() and name.strip() in settings
        if not dropping:
            kept.append(line)
    return "".join(f"{line}\n" for line in kept) + "".join(
        f"{k} = {v}\n" for k, v in settings.items())


def _master_entries(text: str) -> dict[tuple[str, str], list[str]]:
    entries: dict[tuple[str, str], list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if current is not None:
                current.append(line)
            continue
        fields = line.split()
        current = [line]
        entries[(fields[0], fields[1])] = current
    return entries


def send_mail(
    port: int,
    mail_from: str,
    rcpts: Sequence[str],
    *,
    helo: str = "pc1.customer.example",
    source: str = "127.0.0.1",
    subject: str = "test",
    body: str = "hello\n",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> SendResult:
    """One message over SMTP to 127.0.0.1:port from `source`; every reply is kept.

    A recipient refused (4xx/5xx) is recorded, not raised; DATA is sent if any
    recipient was accepted. The queue id comes from the "queued as" / "id" reply.
    """
    msg = EmailMessage()
    msg["From"] = mail_from or "MAILER-DAEMON@example.net"
    msg["To"] = rcpts[0] if rcpts else "undisclosed-recipients:;"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="customer.example")
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    replies: dict[str, tuple[int, str]] = {}
    with smtplib.SMTP("127.0.0.1", port, local_hostname=helo,
                      source_address=(source, 0), timeout=timeout) as s:
        s.ehlo(helo)
        code, text = s.mail(mail_from)
        if code >= 400:
            return SendResult(None, {}, None, (code, text.decode()))
        for rcpt in rcpts:
            code, text = s.rcpt(rcpt)
            replies[rcpt] = (code, text.decode())
        if not any(200 <= c < 300 for c, _ in replies.values()):
            s.rset()
            return SendResult(None, replies, None)
        code, text = s.data(msg.as_bytes(policy=email.policy.SMTP))
    reply = (code, text.decode())
    m = _QUEUED_AS.search(reply[1])
    return SendResult(m.group(1) if m and code == 250 else None, replies, reply)


# --- the instance -------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    """What the customer saw: queue id (None if nothing was queued) and per-step replies."""

    queue_id: str | None
    rcpt_replies: dict[str, tuple[int, str]]
    data_reply: tuple[int, str] | None
    mail_reply: tuple[int, str] = (250, "")

    @property
    def accepted(self) -> list[str]:
        return [r for r, (code, _) in self.rcpt_replies.items() if 200 <= code < 300]

    def refused(self, code_prefix: str = "") -> list[str]:
        return [r for r, (code, _) in self.rcpt_replies.items()
                if code >= 400 and str(code).startswith(code_prefix)]


@dataclass(frozen=True)
class LoggedOutcome:
    queue_id: str
    recipient: str
    status: str
    dsn: str
    reply: str


class LoggedMta:
    """What every MTA under test offers: SMTP on `smtpd_port`, its log at `root/maillog`."""

    root: Path
    smtpd_port: int

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    def send(self, mail_from: str, rcpts: Sequence[str], **kwargs: Any) -> SendResult:
        """One message over SMTP as a customer at `source` (any 127.x address) would send it."""
        return send_mail(self.smtpd_port, mail_from, rcpts, **kwargs)

    def log_text(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class PostfixInstance(LoggedMta):
    """A private Postfix: `start()`, use, `stop()`. All paths live under `root`."""

    root: Path
    smtpd_port: int
    relay_port: int
    milter_port: int
    policy_port: int
    wired: bool = True
    # extrusion's smtpd_milter_maps socketmap ([milter] attach_listen); 0: none is wired,
    # every lookup fails and Postfix attaches smtpd_milters (the fail-safe path).
    map_port: int = 0
    extra_main: dict[str, str] = field(default_factory=dict)
    running: bool = False

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.root / "queue"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def milter_address(self) -> str:
        return f"inet:127.0.0.1:{self.milter_port}"

    @property
    def policy_address(self) -> str:
        return f"inet:127.0.0.1:{self.policy_port}"

    def substitutions(self) -> dict[str, str]:
        return {SNIPPET_MILTER: self.milter_address, SNIPPET_POLICY: self.policy_address,
                SNIPPET_MILTER_MAP: f"inet:127.0.0.1:{self.map_port}",
                SNIPPET_MAILLOG: str(self.maillog)}

    # --- set-up and tear-down ---

    def write_config(self) -> None:
        """main.cf = base + shipped snippet (when wired); master.cf likewise."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Postfix daemons drop to the postfix user and open data_directory by its path.
        self.root.chmod(0o755)
        self.config_dir.mkdir(exist_ok=True)
        self.queue_dir.mkdir(exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        shutil.chown(self.data_dir, "postfix", "postfix")
        main = _MAIN_CF.format(root=self.root, relay_port=self.relay_port)
        master = _MASTER_CF.format(smtpd_port=self.smtpd_port)
        subs = self.substitutions()
        if self.wired:
            main += "\n" + render_snippet("main.cf.snippet", subs)
            master = merge_master_cf(master, render_snippet("master.cf.snippet", subs))
        else:
            main += f"maillog_file = {self.maillog}\n"
            master = merge_master_cf(
                master, "postlog unix-dgram n - n - 1 postlogd\n")
        (self.config_dir / "main.cf").write_text(set_main_cf(main, self.extra_main))
        (self.config_dir / "master.cf").write_text(master)

    def start(self) -> PostfixInstance:
        self.write_config()
        rc, out = self.command("start")
        if rc != 0:
            log = self.maillog.read_text() if self.maillog.exists() else ""
            raise PostfixError(f"postfix start failed ({rc}): {out}\n{log[-2000:]}")
        self.running = True
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.smtpd_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise PostfixError(f"smtpd did not listen on 127.0.0.1:{self.smtpd_port}")

    def stop(self) -> None:
        """`postfix stop`, then make sure no process of this instance survives."""
        if self.config_dir.exists():
            with contextlib.suppress(Exception):
                self.command("stop", timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.running = False

    def pids(self) -> list[int]:
        """Processes of this instance: Postfix daemons run in the queue directory."""
        found: list[int] = []
        queue = str(self.queue_dir)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cwd = os.readlink(entry / "cwd")
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if cwd == queue and stat.rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        return found

    # --- commands ---

    def command(self, *args: str, timeout: float = 60.0) -> tuple[int, str]:
        return run_with_tty(["postfix", "-c", str(self.config_dir), *args], timeout)

    def _run(self, argv: Sequence[str]) -> str:
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=_env(),
                              timeout=60)
        if proc.returncode != 0:
            raise PostfixError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
        return proc.stdout

    def reload(self) -> None:
        rc, out = self.command("reload")
        if rc != 0:
            raise PostfixError(f"postfix reload failed: {out}")

    def postconf(self, settings: Mapping[str, str], reload: bool = True) -> None:
        """Change main.cf settings (postconf -e) and reload."""
        self._run(["postconf", "-c", str(self.config_dir), "-e",
                   *(f"{k}={v}" for k, v in settings.items())])
        if reload:
            self.reload()

    def postconf_n(self) -> str:
        return self._run(["postconf", "-c", str(self.config_dir), "-n"])

    def queue(self) -> list[dict[str, object]]:
        """`postqueue -j`: one dict per queued message (queue_name, queue_id, ...)."""
        out = self._run(["postqueue", "-c", str(self.config_dir), "-j"])
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def held(self) -> list[str]:
        return [str(m["queue_id"]) for m in self.queue() if m["queue_name"] == "hold"]

    def flush(self) -> None:
        self._run(["postqueue", "-c", str(self.config_dir), "-f"])

    def postsuper_hold(self, queue_id: str = "ALL") -> None:
        """Put a message on hold by hand (postsuper -h)."""
        self._run(["postsuper", "-c", str(self.config_dir), "-h", queue_id])

    def release(self, queue_id: str = "ALL") -> None:
        """Move a held message back to the incoming queue (postsuper -H)."""
        self._run(["postsuper", "-c", str(self.config_dir), "-H", queue_id])

    def delete(self, queue_id: str = "ALL") -> None:
        self._run(["postsuper", "-c", str(self.config_dir), "-d", queue_id])

    # --- reading the log (sending and log_text: LoggedMta) ---

    def outcomes(self, queue_id: str) -> list[LoggedOutcome]:
        found = []
        for line in self.log_text().splitlines():
            m = _OUTCOME.search(line)
            if m and m.group("qid") == queue_id:
                found.append(LoggedOutcome(queue_id, m.group("rcpt"), m.group("status"),
                                           m.group("dsn"), m.group("reply") or ""))
        return found

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"no log line matching {pattern!r} within {timeout}s")
            time.sleep(0.1)

    def wait_removed(self, queue_id: str, timeout: float = 30.0) -> dict[str, LoggedOutcome]:
        """Wait until Postfix is done with a message; final outcome per recipient."""
        self.wait_for_log(rf": {re.escape(queue_id)}: removed$", timeout)
        final: dict[str, LoggedOutcome] = {}
        for o in self.outcomes(queue_id):
            if o.status in FINAL_STATUSES:
                final[o.recipient] = o
        return final

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until nothing is queued but held mail."""
        deadline = time.monotonic() + timeout
        while [m for m in self.queue() if m["queue_name"] != "hold"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue not empty after {timeout}s: {self.queue()}")
            time.sleep(0.2)


def make_instance(root: Path, relay_port: int, *, wired: bool = True,
                  extra_main: Mapping[str, str] | None = None) -> PostfixInstance:
    from tests.conftest import free_port

    return PostfixInstance(root=root, smtpd_port=free_port(), relay_port=relay_port,
                           milter_port=free_port(), policy_port=free_port(), wired=wired,
                           extra_main=dict(extra_main or {}), map_port=free_port())


@contextlib.contextmanager
def running_instance(relay_port: int, **kwargs: object) -> Iterator[PostfixInstance]:
    """A started instance in a fresh temp dir; stopped and removed on the way out."""
    inst = _start_on_free_ports(relay_port, **kwargs)
    try:
        yield inst
    finally:
        inst.stop()
        shutil.rmtree(inst.root, ignore_errors=True)


def _start_on_free_ports(relay_port: int, **kwargs: object) -> PostfixInstance:
    """A started instance; on new ports (and a new dir) when its smtpd port was taken.

    A port free when `free_port()` asked can be another process's by the time the
    master binds it, seconds later: on a shared machine, the local port of any
    outgoing connection (another test run's). Binding it then fails the start."""
    for attempt in range(1, START_ATTEMPTS + 1):
        root = Path(tempfile.mkdtemp(prefix="extrusion-postfix-"))
        inst = make_instance(root, relay_port, **kwargs)  # type: ignore[arg-type]
        try:
            return inst.start()
        except BaseException as exc:
            inst.stop()
            shutil.rmtree(root, ignore_errors=True)
            if attempt == START_ATTEMPTS or "Address already in use" not in str(exc):
                raise
    raise AssertionError("unreachable")


# --- fixtures (imported by tests/conftest.py, so one instance serves the whole session) ---


@pytest.fixture(scope="session")
def remote_smtp() -> Iterator[RemoteSMTP]:
    """The remote MX all relayed mail goes to."""
    server = RemoteSMTP().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postfix(remote_smtp: RemoteSMTP) -> Iterator[PostfixInstance]:
    """The session's throw-away Postfix, wired with conf/postfix/*.snippet."""
    require_postfix()
    with running_instance(remote_smtp.port) as inst:
        yield inst
