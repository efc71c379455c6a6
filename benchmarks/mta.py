"""Messages per second through one Postfix: bare, with the milter, the policy daemon, both.

    smtp-source  ->  throw-away Postfix on 127.0.0.1  ->  smtp-sink

One Postfix instance (tests/postfix_harness.py) serves every run; between runs
only its wiring changes (postconf + reload) and the extrusion daemons it needs
are started as real processes (tests/mta/daemons.py), with a SQLite store and
the log feed following Postfix's log. The configurations are interleaved over
several rounds and the median is reported, because a shared 2-core machine is
noisy; the ratios to bare Postfix are the figures that matter.

Reference configurations show what the wiring itself costs, whatever does
the work behind it:

- "noop": a pymilter milter that does nothing (the callbacks extrusion's
  milter negotiates, each answering CONTINUE): pymilter's and libmilter's own
  share of the milter's price, beside extrusion's;
- "attach": a pymilter milter that accepts every connection at connect, so
  Postfix sends it nothing more: the least any milter attached to every SMTP
  session can cost;
- "serve": the milter and the policy server in one `extrusion serve` process (with
  the log feed), the milter attached to every session; "serve-maps" the same
  process with Postfix's `smtpd_milter_maps` asking its socketmap
  (`extrusion.milter.attach`), as shipped: the benchmark's client is in good
  standing, so each session costs a lookup and no milter; "both" runs
  `extrusion milter` and `extrusion policyd` apart. Its CPU is all reported as the policy server's;
- "both-per-client": both, with Postfix's `smtpd_milter_maps` (a static cidr
  table) disabling the milter for the benchmark's client, as if the milter
  were attached only to clients under watch: the best case of that wiring
  (a lookup that costs nothing), for comparison with "serve-maps";
- with --reference, the same floors in C, built from benchmarks/reference/
  with cc and libmilter: "c-noop" (the no-op milter), "c-attach", "c-policy"
  (a policy server that answers DUNNO at once) and "c-both" (c-noop and
  c-policy together, the floor of "both");
- the Python policy floors of benchmarks/pyfloor.py, a Twisted server answering
  DUNNO unread: "py-policy" alone, "py-policy-tail" also following Postfix's log
  with extrusion's follower (lines dropped), "py-policy-parse" also parsing them
  (extrusion's feed up to its parser), "py-policy-join" also joining them (the
  whole feed, its events dropped): beside "policyd" and "c-policy", which part
  of the policy daemon's CPU any Python daemon on Twisted pays and which is
  extrusion's. Their runs also count the requests the server answered.
  "policyd-nofeed" is `extrusion policyd` reading no log ([maillog] source =
  "none"): its answers without its log feed.

Two rates per run: "ingress" (smtp-source's wall time: what customers see,
where the milter and policy answers are paid) and "end to end" (until the
queue is empty and every message was logged as sent).

    .venv/bin/python benchmarks/mta.py [--messages 2000] [--sessions 10] [--rounds 3]
                                       [--milter-socket inet|unix] [--reference]
                                       [--poll-seconds S]
                                       [--configs bare,attach,...]

A run that holds serve-maps and c-both, or policyd and c-policy, ends with issue 17's
targets for them (`TARGETS`): the ingress ratio to the C floor and the CPU of
extrusion's processes per message, each said met or not, with the do-nothing Twisted
servers' figures beside the policy daemon's when they ran.

Every run checks Postfix's log: a run in which Postfix could not reach the
milter or the policy service (and so failed open) is rejected, not reported.

Needs root and the Debian package postfix (smtp-source, smtp-sink); --reference
also needs cc and libmilter-dev.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extrusion import sockspec  # noqa: E402
from extrusion.checkpoint import Position  # noqa: E402
from extrusion.config import load as load_config  # noqa: E402
from extrusion.maillog.recovery import checkpoint_name  # noqa: E402
from extrusion.scoring.store import Store  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.mta.daemons import ExtrusionDaemons, deep_merge  # noqa: E402
from tests.postfix_harness import (  # noqa: E402
    SBIN_PATH,
    PostfixInstance,
    postfix_missing,
    running_instance,
)


@dataclass(frozen=True)
class Setup:
    """What one configuration attaches to Postfix: which milter and which policy service."""

    milter: str = ""  # "", "extrusion", or a reference milter (REFERENCE_MILTERS)
    policy: str = ""  # "", "extrusion", "c-dunno", or a staged floor "py-STAGE" (pyfloor.py)
    # Both served by one `extrusion serve` process (the shipped wiring) instead of
    # `extrusion milter` and `extrusion policyd` apart.
    serve: bool = False
    # smtpd_milter_maps says DISABLE for the benchmark's client: the milter attached
    # only to clients under watch, none of which this traffic comes from.
    per_client: bool = False
    # smtpd_milter_maps asks `extrusion serve`'s socketmap (the shipped wiring since issue
    # 17): the milter only for clients under attention, which this traffic's is not.
    maps: bool = False
    # extrusion's daemon follows Postfix's log ([maillog] source = "file"), or reads
    # none ("none"): what its log feed costs, apart from its answers.
    log_feed: bool = True


SETUPS = {
    "bare": Setup(),
    "attach": Setup(milter="py-attach"),
    "noop": Setup(milter="py-noop"),
    "milter": Setup(milter="extrusion"),
    "policyd": Setup(policy="extrusion"),
    "policyd-nofeed": Setup(policy="extrusion", log_feed=False),
    "both": Setup(milter="extrusion", policy="extrusion"),
    "serve": Setup(milter="extrusion", policy="extrusion", serve=True),
    "serve-maps": Setup(milter="extrusion", policy="extrusion", serve=True, maps=True),
    "both-per-client": Setup(milter="extrusion", policy="extrusion", per_client=True),
    "c-attach": Setup(milter="c-attach"),
    "c-noop": Setup(milter="c-noop"),
    "c-policy": Setup(policy="c-dunno"),
    "c-both": Setup(milter="c-noop", policy="c-dunno"),
    "py-policy": Setup(policy="py-dunno"),
    "py-policy-tail": Setup(policy="py-tail"),
    "py-policy-parse": Setup(policy="py-parse"),
    "py-policy-join": Setup(policy="py-join"),
}
CONFIGS = ("bare", "attach", "noop", "milter", "policyd", "both", "serve")
REFERENCE_CONFIGS = ("c-attach", "c-noop", "c-policy", "c-both")

# Issue 17's targets through Postfix, each against its C floor in the same run:
# (extrusion's config, its floor, least ingress ratio, most CPU ms a message).
TARGETS = (
    ("serve-maps", "c-both", 0.9, 0.8),  # the shipped wiring
    ("policyd", "c-policy", 0.95, 0.15),  # the policy daemon alone, with its log feed
)
# The do-nothing Twisted servers printed beside the policy daemon's target: what any
# Python daemon on Twisted costs, unread, and also reading the log as the target asks.
PY_FLOORS = {
    "py-policy": "a Twisted server answering DUNNO unread",
    "py-policy-join": "the same, also following, parsing and joining the log",
}
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
PYFLOOR = Path(__file__).resolve().parent / "pyfloor.py"
QUEUE_SUBDIRS = ("incoming", "active", "deferred", "maildrop")
DRAIN_TIMEOUT = 300.0
STALE_SMTPD_TIMEOUT = 30.0
MESSAGE_BYTES = 2048
RECIPIENTS_PER_MESSAGE = 2
# Limits far above what a run sends, so every message takes the full path
# (engine asked, counted) and none is throttled.
HUGE_LIMIT = 100_000_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# pymilter with nothing of extrusion: the callbacks and replies extrusion's
# milter negotiates (see extrusion/milter/adapter.py), each answering CONTINUE
# at once, the same macro requests and the same libmilter flags. What "noop" costs is pymilter's and
# libmilter's share of the milter's price; the rest is extrusion's own.
NOOP_MILTER = """
import sys, Milter, milter
class Noop(Milter.Base):
    @Milter.noreply
    @Milter.symlist("{client_addr}")
    def connect(self, hostname, family, hostaddr): return Milter.CONTINUE
    @Milter.noreply
    def hello(self, name): return Milter.CONTINUE
    @Milter.symlist("{auth_authen}", "i", "s")
    def envfrom(self, f, *params): return Milter.CONTINUE
    def envrcpt(self, to, *params): return Milter.CONTINUE
    def data(self): return Milter.CONTINUE
    @Milter.noreply
    def header(self, name, value): return Milter.CONTINUE
    @Milter.noreply
    def body(self, chunk): return Milter.CONTINUE
    @Milter.symlist("i")
    def eom(self): return Milter.CONTINUE
    def setsymlist(self, stage, *macros):
        # pymilter 1.0.5's own hands its C module bytes (negotiation would fail)
        return self._ctx.setsymlist(stage, " ".join(macros))
Milter.factory = Noop
milter.set_flags(milter.ADDHDRS | milter.CHGHDRS | milter.QUARANTINE | milter.SETSYMLIST)
Milter.runmilter("noop", sys.argv[1], 30)
"""

# pymilter accepting every SMTP connection at connect: Postfix opens the milter
# connection, negotiates, sends the connect event, gets ACCEPT and sends nothing
# more for that session.
ATTACH_MILTER = """
import sys, Milter
class Attach(Milter.Base):
    def connect(self, hostname, family, hostaddr): return Milter.ACCEPT
Milter.factory = Attach
Milter.runmilter("attach", sys.argv[1], 30)
"""


# Lines Postfix logs when it cannot reach extrusion and fails open: a run with
# any of them did not measure what it claims.
FAIL_OPEN_SIGNS = (b"connect to Milter service", b"problem talking to server",
                   b"milter", b"policy")


@dataclass(frozen=True)
class Run:
    config: str
    messages: int
    ingress_s: float
    e2e_s: float
    sent: int
    warnings: int = 0
    example: str = ""
    milter_cpu_s: float = 0.0  # CPU time of the milter process during the run
    policy_cpu_s: float = 0.0  # and of the policy server (with extrusion's, the log feed's too)
    log_lines: int = 0  # lines Postfix logged during the run
    requests: int = 0  # policy requests answered (counted by the py-policy floors only)

    @property
    def ingress_rate(self) -> float:
        return self.messages / self.ingress_s

    @property
    def e2e_rate(self) -> float:
        return self.messages / self.e2e_s


def wiring(pf: PostfixInstance, config: str, milter: str = "") -> dict[str, str]:
    """main.cf settings of a configuration: the shipped snippet's lines, or empty."""
    policy = (f"check_policy_service {{ {pf.policy_address}, timeout=10s, try_limit=1, "
              f"default_action=DUNNO }}")
    setup = SETUPS[config]
    use_policy = bool(setup.policy)
    per_client = ""
    if setup.per_client:
        table = pf.config_dir / "milter-per-client.cidr"
        table.write_text("127.0.0.0/8 DISABLE\n")
        per_client = f"cidr:{table}"
    elif setup.maps:
        per_client = f"socketmap:inet:127.0.0.1:{pf.map_port}:milters"
    return {
        "smtpd_milters": (milter or pf.milter_address) if setup.milter else "",
        "smtpd_milter_maps": per_client,
        "smtpd_recipient_restrictions": policy if use_policy else "",
        "smtpd_end_of_data_restrictions": policy if use_policy else "",
    }


def smtpd_pids(pf: PostfixInstance) -> set[int]:
    found = set()
    for pid in pf.pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "smtpd":
                found.add(pid)
        except OSError:
            continue
    return found


def rewire(pf: PostfixInstance, settings: dict[str, str]) -> None:
    """postconf + reload, then wait until no smtpd of the old wiring is left.

    After a reload, smtpd processes started before it keep the old settings
    until they exit; a run they served would be wired wrong.
    """
    old = smtpd_pids(pf)
    pf.postconf(settings)
    deadline = time.monotonic() + STALE_SMTPD_TIMEOUT
    while old & smtpd_pids(pf) and time.monotonic() < deadline:
        time.sleep(0.05)


def daemons_for(config: str) -> tuple[str, ...]:
    """The extrusion daemons a configuration runs."""
    setup = SETUPS[config]
    if setup.serve:
        return ("serve",)
    return tuple(name for name, part in (("milter", setup.milter), ("policyd", setup.policy))
                 if part == "extrusion")


def skip_to_log_end(d: ExtrusionDaemons, pf: PostfixInstance) -> None:
    """Point the log feed's checkpoint at the end of Postfix's log.

    While other configurations run, the policy daemon is stopped and Postfix
    logs thousands of lines; caught up at its next start, they would be
    charged to that run instead of the run's own traffic.
    """
    st = pf.maillog.stat()
    cfg = load_config(d.config_path)
    with Store(f"sqlite:///{d.store_path}") as store:
        store.set_checkpoint(checkpoint_name(cfg),
                             Position(st.st_ino, st.st_size, st.st_size, st.st_dev))


def build_references(work: Path) -> dict[str, Path]:
    """Compile the C reference programs into `work`; their paths by name."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("--reference needs a C compiler (cc)")
    built = {}
    for name, libs in (("noop_milter", ["-lmilter", "-lpthread"]),
                       ("dunno_policy", ["-lpthread"])):
        out = work / name
        done = subprocess.run([cc, "-O2", "-o", str(out), str(REFERENCE_DIR / f"{name}.c"), *libs],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"cannot build {name}.c (libmilter-dev installed?):\n{done.stderr}")
        built[name] = out
    return built


def reference_milter_command(kind: str, spec: str, built: dict[str, Path]) -> list[str]:
    """The command line of a reference milter listening on `spec`."""
    if kind == "py-noop":
        return [sys.executable, "-c", NOOP_MILTER, spec]
    if kind == "py-attach":
        return [sys.executable, "-c", ATTACH_MILTER, spec]
    return [str(built["noop_milter"]), spec, {"c-attach": "accept", "c-noop": "noop"}[kind]]


def pyfloor_command(setup: Setup, config: Path, stats: Path, port: int) -> list[str]:
    """The command line of a staged Python policy floor (benchmarks/pyfloor.py)."""
    stage = setup.policy.removeprefix("py-")
    return [sys.executable, str(PYFLOOR), stage, "--listen",
            f"tcp:{port}:interface=127.0.0.1", "--config", str(config), "--stats", str(stats)]


def queued(pf: PostfixInstance) -> int:
    n = 0
    for sub in QUEUE_SUBDIRS:
        for _root, _dirs, files in os.walk(pf.queue_dir / sub):
            n += len(files)
    return n


@contextmanager
def reference_server(command: list[str], spec: str) -> Iterator[int]:
    """A reference milter or policy server, once it accepts connections, until the block ends."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not sockspec.accepts(spec):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start")
            time.sleep(0.05)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def smtp_sink(port: int) -> Iterator[None]:
    sink = subprocess.Popen(
        ["smtp-sink", "-u", "postfix", f"127.0.0.1:{port}", "512"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={"PATH": SBIN_PATH})
    try:
        time.sleep(0.3)
        if sink.poll() is not None:
            raise RuntimeError("smtp-sink did not start")
        yield
    finally:
        sink.terminate()
        with suppress(subprocess.TimeoutExpired):
            sink.wait(5)
        if sink.poll() is None:
            sink.kill()
            sink.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 without one)."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def one_run(pf: PostfixInstance, config: str, messages: int, sessions: int,
            milter_pid: int = 0, policy_pid: int = 0, settle_s: float = 0.0) -> Run:
    """`settle_s`: how long after the queue drained the processes' CPU is read, so a
    log follower's last poll of the run's lines is counted in it."""
    log_start = pf.maillog.stat().st_size
    cpu0, policy_cpu0 = cpu_seconds(milter_pid), cpu_seconds(policy_pid)
    t0 = time.perf_counter()
    subprocess.run(
        ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(MESSAGE_BYTES),
         "-r", str(RECIPIENTS_PER_MESSAGE), "-N", "-M", "bench.customer.example",
         "-f", "bench@customer.example", "-t", "rcpt@remote.example",
         f"127.0.0.1:{pf.smtpd_port}"],
        check=True, env={"PATH": SBIN_PATH}, stdout=subprocess.DEVNULL, timeout=DRAIN_TIMEOUT)
    t_in = time.perf_counter()
    deadline = t_in + DRAIN_TIMEOUT
    while queued(pf) and time.perf_counter() < deadline:
        time.sleep(0.02)
    t_end = time.perf_counter()
    time.sleep(settle_s)
    milter_cpu = cpu_seconds(milter_pid) - cpu0
    policy_cpu = cpu_seconds(policy_pid) - policy_cpu0
    with pf.maillog.open("rb") as f:
        f.seek(log_start)
        segment = f.read()
    bad = [line for line in segment.splitlines()
           if b"warning:" in line and any(s in line for s in FAIL_OPEN_SIGNS)]
    return Run(config, messages, t_in - t0, t_end - t0, segment.count(b"status=sent"),
               len(bad), bad[0].decode(errors="replace") if bad else "",
               milter_cpu_s=milter_cpu, policy_cpu_s=policy_cpu,
               log_lines=segment.count(b"\n"))


def bench_settings(milter_socket: str = "", poll_seconds: float = 0.0) -> dict[str, object]:
    huge = {"messages_per_hour": HUGE_LIMIT, "recipients_per_hour": HUGE_LIMIT,
            "messages_per_day": 0, "recipients_per_day": 0}
    settings: dict[str, object] = {
        "general": {"log_level": "warning"},
        "limits": {"default": huge, "consumer": huge, "business": huge, "throttled": huge}}
    if milter_socket:
        settings["milter"] = {"socket": milter_socket}
    if poll_seconds:
        settings["maillog"] = {"poll_seconds": poll_seconds}
    return settings


def open_unix_socket(path: Path) -> None:
    """Let Postfix's smtpd (user postfix) reach a unix milter socket made by root."""
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    path.parent.chmod(0o755)
    path.chmod(0o666)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--configs", default="",
                    help=f"comma-separated, from {', '.join(SETUPS)} "
                         f"(default: {','.join(CONFIGS)}, and the C ones with --reference)")
    ap.add_argument("--milter-socket", choices=("inet", "unix"), default="inet",
                    help="milter over TCP on 127.0.0.1 (as shipped) or a unix socket")
    ap.add_argument("--poll-seconds", type=float, default=0.0,
                    help="[maillog] poll_seconds of extrusion's daemons and the py-policy "
                         "floors (default: the test harness's 0.2; shipped: 1.0)")
    ap.add_argument("--reference", action="store_true",
                    help="also run the C floors built from benchmarks/reference/")
    args = ap.parse_args(argv)
    # SIGTERM (a timeout, kill) unwinds like ^C: Postfix, smtp-sink and the daemons stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if reason := postfix_missing():
        print(f"benchmarks/mta.py: {reason}", file=sys.stderr)
        return 69
    configs = [c for c in args.configs.split(",") if c] or [
        *CONFIGS, *(REFERENCE_CONFIGS if args.reference else ())]
    if unknown := [c for c in configs if c not in SETUPS]:
        ap.error(f"unknown configuration {', '.join(unknown)}; known: {', '.join(SETUPS)}")
    sink_port = free_port()
    work = Path(tempfile.mkdtemp(prefix="extrusion-bench-"))
    runs: list[Run] = []
    try:
        built = {}
        if any(c.startswith("c-") for c in configs):
            built = build_references(work)
        with smtp_sink(sink_port), running_instance(sink_port) as pf:
            unix_path = work / "milter.sock"
            unix = args.milter_socket == "unix"
            settings = bench_settings(f"unix:{unix_path}" if unix else "", args.poll_seconds)
            d = ExtrusionDaemons(work, pf, free_port(), settings)
            d.write_config()
            # Its own config and store, so the feed's checkpoint in `d`'s is left alone.
            no_feed = ExtrusionDaemons(work / "no-feed", pf, free_port(),
                                       deep_merge(settings, {"maillog": {"source": "none"}}))
            no_feed.write_config()
            # Two polls of the log feed: the last lines of a run read before its CPU is.
            settle = 2 * load_config(d.config_path).maillog.poll_seconds
            milter_addr = f"unix:{unix_path}" if unix else ""
            # warm-up: first connections, process start-up, SQLite file creation
            rewire(pf, wiring(pf, "bare"))
            one_run(pf, "warm-up", min(200, args.messages), args.sessions)
            width = max(map(len, configs))
            for rnd in range(args.rounds):
                for config in configs:
                    rewire(pf, wiring(pf, config, milter_addr))
                    setup = SETUPS[config]
                    with ExitStack() as stack:
                        milter_pid = policy_pid = 0
                        if setup.milter not in ("", "extrusion"):
                            spec = milter_addr or f"inet:{pf.milter_port}@127.0.0.1"
                            milter_pid = stack.enter_context(reference_server(
                                reference_milter_command(setup.milter, spec, built), spec))
                            if unix:
                                open_unix_socket(unix_path)
                        if setup.policy == "c-dunno":
                            policy_pid = stack.enter_context(reference_server(
                                [str(built["dunno_policy"]), str(pf.policy_port)],
                                f"inet:{pf.policy_port}@127.0.0.1"))
                        stats = work / "pyfloor-stats.json"
                        if setup.policy.startswith("py-"):
                            stats.unlink(missing_ok=True)
                            policy_pid = stack.enter_context(reference_server(
                                pyfloor_command(setup, d.config_path, stats, pf.policy_port),
                                f"inet:{pf.policy_port}@127.0.0.1"))
                        if daemons_for(config):
                            ours = d if setup.log_feed else no_feed
                            if setup.log_feed and {"policyd", "serve"} & set(daemons_for(config)):
                                skip_to_log_end(d, pf)
                            stack.callback(ours.stop)
                            ours.start(*daemons_for(config))
                            if unix and "milter" in daemons_for(config):
                                open_unix_socket(unix_path)
                            if "milter" in ours.procs:
                                milter_pid = ours.procs["milter"].popen.pid
                            if "policyd" in ours.procs:
                                policy_pid = ours.procs["policyd"].popen.pid
                            if "serve" in ours.procs:
                                # One process: all its CPU is counted as the policy
                                # server's (milter, policy, log feed together).
                                policy_pid = ours.procs["serve"].popen.pid
                        run = one_run(pf, config, args.messages, args.sessions, milter_pid,
                                      policy_pid, settle)
                    if setup.policy.startswith("py-"):
                        # Written by the floor as it stopped, at the end of the block.
                        run = replace(run, requests=json.loads(stats.read_text())["requests"])
                    runs.append(run)
                    print(f"round {rnd + 1} {config:{width}s} "
                          f"ingress {run.ingress_rate:7.1f} msg/s  "
                          f"end-to-end {run.e2e_rate:7.1f} msg/s  sent {run.sent}  "
                          f"milter CPU {1000 * run.milter_cpu_s / run.messages:.2f} ms/msg  "
                          f"policy CPU {1000 * run.policy_cpu_s / run.messages:.2f} ms/msg  "
                          f"milter/policy warnings {run.warnings}", flush=True)
                    if run.warnings or run.sent != args.messages * RECIPIENTS_PER_MESSAGE:
                        print(f"benchmarks/mta.py: run {config} is invalid (Postfix failed "
                              f"open or lost mail): {run.example}", file=sys.stderr)
                        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(runs, configs, args)
    return 0


def report(runs: list[Run], configs: list[str], args: argparse.Namespace) -> None:
    med_in = {c: statistics.median(r.ingress_rate for r in runs if r.config == c)
              for c in configs}
    med_e2e = {c: statistics.median(r.e2e_rate for r in runs if r.config == c) for c in configs}
    print()
    print(f"{args.messages} messages x {RECIPIENTS_PER_MESSAGE} recipients, "
          f"{args.sessions} sessions, milter over {args.milter_socket}, "
          f"median of {args.rounds} rounds")
    width = max(10, *map(len, configs))
    print(f"{'config':{width}s} {'ingress msg/s':>14s} {'ratio':>7s} {'end-to-end msg/s':>17s} "
          f"{'ratio':>7s}")
    base = configs[0]
    for c in configs:
        print(f"{c:{width}s} {med_in[c]:14.1f} {med_in[c] / med_in[base]:7.2f} "
              f"{med_e2e[c]:17.1f} {med_e2e[c] / med_e2e[base]:7.2f}")
    if {"bare", "noop", "milter"} <= set(configs):
        # Time per message at ingress, over what bare Postfix takes: how much of
        # the milter's price pymilter/libmilter alone already pay.
        def extra(c: str) -> float:
            return 1000 / med_in[c] - 1000 / med_in["bare"]
        print(f"added ingress time per message: no-op pymilter {extra('noop'):+.2f} ms, "
              f"extrusion milter {extra('milter'):+.2f} ms")
    for what, attr in (("milter", "milter_cpu_s"), ("policy server", "policy_cpu_s")):
        for c in configs:
            cpu = [1000 * getattr(r, attr) / r.messages for r in runs if r.config == c]
            if any(cpu):
                print(f"{what} process CPU per message, {c}: {statistics.median(cpu):.3f} ms "
                      f"(median; rounds {', '.join(f'{x:.3f}' for x in cpu)})")
    cpu_med = {c: statistics.median(1000 * (r.milter_cpu_s + r.policy_cpu_s) / r.messages
                                    for r in runs if r.config == c) for c in configs}
    for line in target_lines(med_in, cpu_med):
        print(line)
    # What each message asks of a policy server and of a log follower, in this traffic.
    for c in configs:
        lines = [r.log_lines / r.messages for r in runs if r.config == c]
        requests = [r.requests / r.messages for r in runs if r.config == c and r.requests]
        print(f"per message, {c}: {statistics.median(lines):.2f} log lines"
              + (f", {statistics.median(requests):.2f} policy requests" if requests else ""))


def target_lines(ingress: dict[str, float], cpu_ms: dict[str, float]) -> list[str]:
    """Issue 17's targets for the configs this run measured beside their floor: the
    ingress ratio (medians) and the CPU of the config's own processes per message."""
    out: list[str] = []
    for config, floor, least, most in TARGETS:
        if config not in ingress or floor not in ingress:
            continue
        if not out:
            out.append("issue 17 targets (medians of this run):")
        ratio = ingress[config] / ingress[floor]
        out.append(f"  {config} / {floor} ingress: {ratio:.2f} (target >= {least}): "
                   f"{'met' if ratio >= least else 'NOT met'}")
        out.append(f"  {config} CPU: {cpu_ms[config]:.3f} ms a message (target <= {most}): "
                   f"{'met' if cpu_ms[config] <= most else 'NOT met'}")
        if floor == "c-policy":
            for py, what in PY_FLOORS.items():
                if py in ingress:
                    out.append(f"    beside it {py}, {what}: "
                               f"{ingress[py] / ingress[floor]:.2f} of {floor}, "
                               f"{cpu_ms[py]:.3f} ms a message")
    return out


if __name__ == "__main__":
    sys.exit(main())
