"""Policy server throughput and latency, extrusion beside postfwd, on one request stream.

    .venv/bin/python benchmarks/policyd.py [--connections 64] [--requests 60000]
        [--in-process | --engine-only] [--warmup 2000]

Starts `extrusion policyd` (SQLite store in a temp dir), postfwd2 and postfwd1
(Debian package `postfwd`) on free loopback ports, each with the same per-sender rate
limit (500 messages and 2000 recipients an hour per SASL user, answered with
DEFER_IF_PERMIT 4.7.1), and drives both with the same generated stream of
RCPT and END-OF-MESSAGE requests over many concurrent connections, the way
Postfix's smtpd processes do: one request at a time per connection, each
connection reused. Prints requests/s, p50/p99 latency, the count of each
answer (both must defer the same heavy senders), the ratios, extrusion's CPU
per request, and issue 17's two targets (>= 10x postfwd2's throughput, p99 <=
3 ms, at 16 connections). Last, a do-nothing Twisted server answering DUNNO
takes the same stream (--no-floor skips it): what this client and the
machine's load allow any Python server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MESSAGES_PER_HOUR = 500
RECIPIENTS_PER_HOUR = 2000
START_TIMEOUT = 30.0
# Issue 17's targets for the policy server, at 16 connections.
TARGET_CONNECTIONS = 16
TARGET_THROUGHPUT_VS_POSTFWD2 = 10.0
TARGET_P99_MS = 3.0

POSTFWD_RULES = f"""\
id=RCPT01; protocol_state==RCPT; sasl_username=!!^$; \
action=rate(sasl_username/{RECIPIENTS_PER_HOUR}/3600/DEFER_IF_PERMIT 4.7.1 too many recipients)
id=MSG01; protocol_state==END-OF-MESSAGE; sasl_username=!!^$; \
action=rate(sasl_username/{MESSAGES_PER_HOUR}/3600/DEFER_IF_PERMIT 4.7.1 too many messages)
"""

EXTRUSION_CONFIG = f"""\
[general]
log_level = "warning"
[store]
url = "sqlite:///{{tmp}}/extrusion.db"
spool_dir = "{{tmp}}/spool"
[policyd]
listen = "tcp:{{port}}:interface=127.0.0.1"
hold_queued_mail = false
[api]
listen = "tcp:{{api_port}}:interface=127.0.0.1"
[milter]
enabled = false
[limits.default]
messages_per_hour = {MESSAGES_PER_HOUR}
recipients_per_hour = {RECIPIENTS_PER_HOUR}
"""


# The least a Python policy server can cost here: Twisted, a reply per request,
# no parsing, no judging (benchmarks/pyfloor.py's "dunno" stage). What it reaches is
# what this client and this machine's load allow any server; extrusion's p99 is read
# against it.
FLOOR_SERVER = REPO / "benchmarks" / "pyfloor.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(state: str, user: str, client: str, rcpt: str, count: int, qid: str) -> bytes:
    return (
        "request=smtpd_access_policy\n"
        f"protocol_state={state}\nprotocol_name=ESMTP\nhelo_name=pc.{user}.example\n"
        f"queue_id={qid}\nsender={user}@customer.example\nrecipient={rcpt}\n"
        f"recipient_count={count}\nclient_address={client}\nclient_name=unknown\n"
        f"reverse_client_name=unknown\ninstance={qid}.1\nsasl_method=plain\n"
        f"sasl_username={user}\nsasl_sender=\nsize={2000 if state != 'RCPT' else 0}\n"
        "ccert_subject=\nencryption_protocol=TLSv1.3\netrn_domain=\nstress=\n"
        "server_address=127.0.0.1\nserver_port=587\n\n"
    ).encode()


def stream(total: int, seed: int = 1) -> list[bytes]:
    """Messages of 1-5 recipients from 2000 customers; 3 bots send a fifth of all mail."""
    rng = random.Random(seed)
    users = [f"user{i}" for i in range(2000)]
    bots = [f"bot{i}" for i in range(3)]
    out: list[bytes] = []
    n = 0
    while len(out) < total:
        n += 1
        user = rng.choice(bots) if rng.random() < 0.2 else rng.choice(users)
        client = f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        qid = f"{n:011X}"
        k = rng.randint(1, 5)
        for j in range(k):
            out.append(request("RCPT", user, client, f"r{j}.{n}@remote.example", 0, ""))
        out.append(request("END-OF-MESSAGE", user, client, "", k, qid))
    return out[:total]


@dataclass
class Result:
    name: str
    seconds: float
    latencies: list[float]
    answers: Counter[str]
    cpu: float | None = None  # CPU seconds of the server's process over the measured run
    # ... of which its main thread's (the reactor's; the rest is the maintenance thread's)
    main_cpu: float | None = None

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, p: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000


async def _worker(port: int, items: list[bytes], lat: list[float], answers: Counter[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    try:
        for req in items:
            t0 = clock()
            writer.write(req)
            reply = await reader.readuntil(b"\n\n")
            lat.append(clock() - t0)
            answers[reply[7:].split(b" ", 1)[0].strip().decode()] += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def _drive(
    port: int, reqs: list[bytes], connections: int
) -> tuple[float, list[float], Counter[str]]:
    lat: list[float] = []
    answers: Counter[str] = Counter()
    # Requests go round-robin to the connections, so each sender's stream is spread
    # over them as over Postfix's smtpd processes.
    shares = [reqs[i::connections] for i in range(connections)]
    t0 = time.perf_counter()
    await asyncio.gather(*(_worker(port, s, lat, answers) for s in shares))
    return time.perf_counter() - t0, lat, answers


def process_cpu(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads), or of one of its
    threads (the main thread's id is the process's), from /proc."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    name: str, port: int, reqs: list[bytes], connections: int, warmup: list[bytes],
    pid: int | None = None,
) -> Result:
    asyncio.run(_drive(port, warmup, connections))
    if pid is None:
        seconds, lat, answers = asyncio.run(_drive(port, reqs, connections))
        return Result(name, seconds, lat, answers)
    before, main_before = process_cpu(pid), process_cpu(pid, pid)
    seconds, lat, answers = asyncio.run(_drive(port, reqs, connections))
    return Result(name, seconds, lat, answers, process_cpu(pid) - before,
                  process_cpu(pid, pid) - main_before)


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None,
              timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def wait_engine(api_port: int, proc: subprocess.Popen[bytes],
                timeout: float = START_TIMEOUT) -> None:
    """The policy port answers before the store is open (with the default action):
    measure only once /healthz says the engine judges."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{api_port}/healthz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"extrusion exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise SystemExit("extrusion's engine did not open")


def wait_ready(notify: socket.socket, proc: subprocess.Popen[bytes],
               timeout: float = START_TIMEOUT) -> None:
    """Until the daemon sends systemd's READY=1: its start-up ends after /healthz says
    the engine judges (the log follower's first poll, then a full collection of the
    start-up heap, `daemon.settle_heap`), and that work must not land in the measured
    requests' CPU."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"extrusion exited with status {proc.returncode}")
        notify.settimeout(0.2)
        try:
            if b"READY=1" in notify.recv(4096).split(b"\n"):
                return
        except TimeoutError:
            continue
    raise SystemExit("extrusion never said READY=1")


def run_extrusion(tmp: Path, reqs: list[bytes], warm: list[bytes], connections: int) -> Result:
    port, api_port = free_port(), free_port()
    conf = tmp / "extrusion.toml"
    conf.write_text(EXTRUSION_CONFIG.format(tmp=tmp, port=port, api_port=api_port))
    exe = Path(sys.executable).parent / "extrusion"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp / "notify.sock"))
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp / "notify.sock")}
        proc = subprocess.Popen([str(exe), "policyd", "--config", str(conf)], env=env)
        try:
            wait_port(port, proc)
            wait_engine(api_port, proc)
            wait_ready(notify, proc)
            return measure("extrusion", port, reqs, connections, warm, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def run_floor(reqs: list[bytes], warm: list[bytes], connections: int) -> Result:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FLOOR_SERVER), "dunno",
                             "--listen", f"tcp:{port}:interface=127.0.0.1"])
    try:
        wait_port(port, proc)
        return measure("floor", port, reqs, connections, warm, proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


@dataclass
class EngineHolder:
    """What the daemon's engine service is to the responder: something with `.engine`."""

    engine: Any


def string_connections(engine: Any, clock: Any, now: Callable[[], float], count: int,
                       idle_timeout: int = 300) -> list[tuple[Any, Any]]:
    """`count` connections of the daemon's own protocol, parser and responder (as
    configured by `EXTRUSION_CONFIG`) over Twisted's StringTransport, each as (protocol,
    transport): a request path without sockets or scheduler, for the in-process runs."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from extrusion.policyd.metrics import Metrics
    from extrusion.policyd.protocol import PolicyFactory
    from extrusion.policyd.responder import Responder

    metrics = Metrics()
    factory = PolicyFactory(
        Responder(EngineHolder(engine), "DUNNO", metrics, now), metrics, clock,
        allowed_clients=("127.0.0.0/8",), max_line=2048, max_attributes=100,
        idle_timeout=idle_timeout,
    )
    conns = []
    for i in range(count):
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + i))
        proto = factory.buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        conns.append((proto, transport))
    return conns


def in_process(tmp: Path, reqs: list[bytes], warm: list[bytes]) -> float:
    """CPU seconds per request of the request path alone, without sockets or scheduler:
    the daemon's protocol, parser, responder and engine (same config, same stream) fed
    over Twisted's StringTransport, 16 connections round-robin, timed by process_time."""
    from twisted.internet import task

    from extrusion.config.load import load
    from extrusion.scoring.engine import open_engine

    conf = tmp / "in-process.toml"
    conf.write_text(EXTRUSION_CONFIG.format(tmp=tmp, port=0, api_port=0))
    engine = open_engine(load(conf))
    clock = task.Clock()
    clock.advance(time.time())
    conns = string_connections(engine, clock, clock.seconds, 16)

    def feed(stream: list[bytes]) -> None:
        for i, req in enumerate(stream):
            proto, transport = conns[i % len(conns)]
            proto.dataReceived(req)
            transport.clear()

    try:
        feed(warm)
        t0 = time.process_time()
        feed(reqs)
        return (time.process_time() - t0) / len(reqs)
    finally:
        engine.close()


def engine_only(tmp: Path, reqs: list[bytes], warm: list[bytes]) -> float:
    """CPU seconds per request of the engine's side alone: `decide()` (and `helo_note()`
    at END-OF-MESSAGE) with the arguments the responder gives them, from the stream
    parsed beforehand, on a clock advancing 0.2 ms per request, the engine flushed every
    5,000 requests as the daemon's maintenance would."""
    from extrusion.config.load import load
    from extrusion.policyd.request import RequestParser
    from extrusion.policyd.responder import _STAGES
    from extrusion.scoring.engine import open_engine
    from extrusion.scoring.events import Stage

    conf = tmp / "engine-only.toml"
    conf.write_text(EXTRUSION_CONFIG.format(tmp=tmp, port=0, api_port=0))
    now = [1_790_000_000.0]
    engine = open_engine(load(conf), lambda: now[0])
    parser = RequestParser(2048, 100)

    def calls(stream: list[bytes]) -> list[tuple[Any, ...]]:
        out = []
        for raw in stream:
            a = parser.feed(raw)[0].attrs
            stage, counted = _STAGES[a["protocol_state"].upper()]
            n = 1 if stage is Stage.RCPT else max(int(a["recipient_count"]), 1)
            sender = engine.sender_key(client_addr=a["client_address"],
                                       sasl_user=a["sasl_username"])
            out.append((sender, stage, n, counted, (a["helo_name"],), a["client_address"],
                        a["sender"], a["recipient"]))
        return out

    def run(todo: list[tuple[Any, ...]]) -> None:
        for i, (sender, stage, n, counted, helos, client, env, rcpt) in enumerate(todo):
            now[0] += 0.0002
            engine.decide(sender, stage, n, now[0], count=counted, helos=helos,
                          client_addr=client, envelope_from=env, recipient=rcpt)
            if stage is Stage.EOM:
                engine.helo_note(helos, client, "", env)
            if i % 5000 == 4999:
                engine.flush()

    try:
        run(calls(warm))
        todo = calls(reqs)
        t0 = time.process_time()
        run(todo)
        return (time.process_time() - t0) / len(reqs)
    finally:
        engine.close()


def run_postfwd(
    version: int, tmp: Path, reqs: list[bytes], warm: list[bytes], connections: int
) -> Result:
    """postfwd2 (pre-forked children, rate counters in its cache daemon) or postfwd1
    (one process multiplexing every connection, counters in memory)."""
    name = f"postfwd{version}"
    binary = shutil.which(name) or f"/usr/sbin/{name}"
    if not os.path.exists(binary):
        raise SystemExit(f"{name} not found (Debian package postfwd): apt-get install -y postfwd")
    port, cache_port = free_port(), free_port()
    rules = tmp / "postfwd.cf"
    rules.write_text(POSTFWD_RULES)
    pidfile = tmp / f"{name}.pid"
    argv = [binary, "--daemon", "--file", str(rules), "--pidfile", str(pidfile),
            "-u", "nobody", "-g", "nogroup", "--nodns", "--perfmon"]
    if version == 2:
        argv += [
            "--server_socket", f"tcp:127.0.0.1:{port}",
            # Without a TCP cache socket its children find no cache daemon: rate() is void.
            "--cache_socket", f"tcp:127.0.0.1:{cache_port}",
            # One child serves one connection at a time, as many as Postfix opens.
            "--min_servers", str(connections), "--max_servers", str(connections + 8),
            # Net::Server refuses to start when max_spare_servers (50 by default in
            # postfwd2) is not below max_servers: the policy port never opened.
            "--max_spare_servers", str(connections + 7),
        ]
    else:
        argv += ["--interface", "127.0.0.1", "--port", str(port)]
    # postfwd forks into the background; it is stopped below by the pid it writes.
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return measure(name, port, reqs, connections, warm)
    finally:
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--requests", type=int, default=60000)
    ap.add_argument("--warmup", type=int, default=2000,
                    help="requests sent before the measured ones (the same customers)")
    ap.add_argument("--postfwd", default="2,1", help="postfwd versions to run beside (2,1)")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the do-nothing Twisted server (the client's and machine's limit)")
    ap.add_argument("--in-process", action="store_true",
                    help="only the request path's CPU per request, in this process, no sockets")
    ap.add_argument("--engine-only", action="store_true",
                    help="only the engine's side (decide, helo_note) per request, in process")
    args = ap.parse_args()
    versions = [int(v) for v in args.postfwd.split(",") if v]
    reqs = stream(args.requests)
    warm = stream(args.warmup, seed=2)
    if args.engine_only:
        with tempfile.TemporaryDirectory() as d:
            cpu = engine_only(Path(d), reqs, warm)
        print(f"{len(reqs)} requests, engine only: {cpu * 1e6:.1f} us CPU per request "
              "(decide, helo_note at END-OF-MESSAGE)")
        return
    if args.in_process:
        with tempfile.TemporaryDirectory() as d:
            cpu = in_process(Path(d), reqs, warm)
        print(f"{len(reqs)} requests in process: {cpu * 1e6:.1f} us CPU per request "
              "(protocol, parser, responder, engine)")
        return
    print(f"{len(reqs)} requests over {args.connections} connections, "
          f"{os.cpu_count()} cores, loopback")
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.chmod(tmp, 0o755)  # postfwd reads its rules as nobody
        results.append(run_extrusion(tmp, reqs, warm, args.connections))
        for version in versions:
            sub = tmp / f"pf{version}"
            sub.mkdir()
            results.append(run_postfwd(version, sub, reqs, warm, args.connections))
    floor = None if args.no_floor else run_floor(reqs, warm, args.connections)
    print(f"{'server':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  answers")
    for r in results + ([floor] if floor is not None else []):
        answers = ", ".join(f"{k} {v}" for k, v in sorted(r.answers.items()))
        print(f"{r.name:<10} {r.rate:9.0f} {r.pct(0.5):8.2f} {r.pct(0.99):8.2f}  {answers}")
    ours, *theirs = results
    if ours.cpu is not None:
        print(f"extrusion CPU: {ours.cpu:.2f} s, {ours.cpu / len(reqs) * 1e6:.0f} us per request "
              "(all its threads, the log feed idle)")
        if ours.main_cpu is not None:
            per = 1e6 / len(reqs)
            print(f"  main thread (reactor) {ours.main_cpu * per:.0f} us, other threads "
                  f"(maintenance: flush, refresh) {(ours.cpu - ours.main_cpu) * per:.0f} us")
    if floor is not None and floor.cpu is not None:
        print(f"floor CPU: {floor.cpu / len(reqs) * 1e6:.0f} us per request; extrusion reaches "
              f"{ours.rate / floor.rate:.2f}x its throughput at "
              f"{ours.pct(0.99) / floor.pct(0.99):.2f}x its p99")
    for other in theirs:
        print(f"extrusion/{other.name}: throughput {ours.rate / other.rate:.2f}x, "
              f"p99 {ours.pct(0.99) / other.pct(0.99):.2f}x")
    if any(r.answers != ours.answers for r in theirs):
        print("warning: the servers answered differently; the limits are not equivalent")
    print_targets(ours, theirs, args.connections)


def print_targets(ours: Result, theirs: list[Result], connections: int) -> None:
    """Issue 17's two targets, each as the measured ratio to its bound."""
    where = "" if connections == TARGET_CONNECTIONS else (
        f" (measured at {connections} connections; the targets are at {TARGET_CONNECTIONS})")
    print(f"issue 17 targets{where}:")
    pf2 = next((r for r in theirs if r.name == "postfwd2"), None)
    if pf2 is not None:
        ratio = ours.rate / pf2.rate
        print(f"  throughput vs postfwd2: {ratio:.2f}x (target >= "
              f"{TARGET_THROUGHPUT_VS_POSTFWD2:g}x): "
              f"{'met' if ratio >= TARGET_THROUGHPUT_VS_POSTFWD2 else 'NOT met'}")
    p99 = ours.pct(0.99)
    print(f"  extrusion p99: {p99:.2f} ms (target <= {TARGET_P99_MS:g} ms, "
          f"{p99 / TARGET_P99_MS:.2f}x the bound): "
          f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
