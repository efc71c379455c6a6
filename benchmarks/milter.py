"""Milter overhead: callbacks per second and added latency per message, on loopback.

Runs, side by side in one run, a no-op pymilter milter (same callbacks, each
returning CONTINUE) and `extrusion milter` (SQLite store in a temporary
directory), and drives both with the same small milter-protocol client: one
SMTP session per message (connect, HELO, MAIL with a SASL login or none,
RCPT x N, headers, body, end of message, quit), the way Postfix opens one
milter connection per SMTP session. Prints per-message latency (p50/p99),
messages and callbacks per second, sequential and with concurrent sessions,
and the ratio extrusion / no-op.

    .venv/bin/python benchmarks/milter.py [--messages 3000] [--rcpts 3] [--concurrency 8]

(`miltertest` starts a Lua interpreter per run and cannot time single
messages, hence the client below; it speaks milter protocol version 6 as
libmilter expects it from Postfix and Sendmail.)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# --- the milter protocol, MTA side ----------------------------------------------------------

VERSION = 6
ACTIONS = 0x1FF  # every action an MTA may grant
PROTOCOL = 0x1FFFFF  # every step an MTA may skip or not wait for
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT = 0x1, 0x2, 0x4, 0x8
P_NOBODY, P_NOHDRS, P_NOEOH, P_NR_HDR = 0x10, 0x20, 0x40, 0x80
P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
P_NR_EOH, P_NR_BODY = 0x40000, 0x80000
FINAL_REPLIES = b"cartyd"  # continue accept reject tempfail replycode discard


class MilterClient:
    """One milter connection = one SMTP session; counts the callbacks it causes."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.callbacks = 0
        self.steps = 0
        self._send(b"O", struct.pack("!III", VERSION, ACTIONS, PROTOCOL))
        cmd, data = self._read()
        assert cmd == b"O", cmd
        _version, _actions, self.steps = struct.unpack("!III", data[:12])

    def close(self) -> None:
        self._send(b"Q", b"")
        self.sock.close()

    def _send(self, cmd: bytes, data: bytes) -> None:
        self.sock.sendall(struct.pack("!I", len(data) + 1) + cmd + data)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("milter closed the connection")
            buf += chunk
        return buf

    def _read(self) -> tuple[bytes, bytes]:
        (length,) = struct.unpack("!I", self._recv_exact(4))
        body = self._recv_exact(length)
        return body[:1], body[1:]

    def _step(self, skip: int, noreply: int, cmd: bytes, data: bytes) -> bytes:
        if self.steps & skip:
            return b"c"
        self._send(cmd, data)
        self.callbacks += 1
        if self.steps & noreply:
            return b"c"
        while True:  # end of message may bring actions (add header, quarantine) first
            reply, _ = self._read()
            if reply in FINAL_REPLIES:
                return reply

    def macros(self, stage: bytes, pairs: dict[str, str]) -> None:
        data = stage + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs.items())
        self._send(b"D", data)

    def connect(self, host: str, addr: str) -> bytes:
        data = host.encode() + b"\0" + b"4" + struct.pack("!H", 25) + addr.encode() + b"\0"
        return self._step(P_NOCONNECT, P_NR_CONN, b"C", data)

    def helo(self, name: str) -> bytes:
        return self._step(P_NOHELO, P_NR_HELO, b"H", name.encode() + b"\0")

    def mail(self, sender: str) -> bytes:
        return self._step(P_NOMAIL, P_NR_MAIL, b"M", sender.encode() + b"\0")

    def rcpt(self, rcpt: str) -> bytes:
        return self._step(P_NORCPT, P_NR_RCPT, b"R", rcpt.encode() + b"\0")

    def header(self, name: str, value: str) -> bytes:
        return self._step(P_NOHDRS, P_NR_HDR, b"L", name.encode() + b"\0" + value.encode() + b"\0")

    def eoh(self) -> bytes:
        return self._step(P_NOEOH, P_NR_EOH, b"N", b"")

    def body(self, chunk: bytes) -> bytes:
        return self._step(P_NOBODY, P_NR_BODY, b"B", chunk)

    def eom(self) -> bytes:
        return self._step(0, 0, b"E", b"")


HEADERS = [
    ("Received", "from pc (pc.example.net [192.0.2.1]) by mta1.example"),
    ("From", "Alice <alice@example.net>"),
    ("To", "bob@example.org"),
    ("Subject", "quarterly figures"),
    ("Message-ID", "<20261130.1234@example.net>"),
    ("Date", "Mon, 30 Nov 2026 10:00:00 +0000"),
]
BODY = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n" * 35  # ~2 kB


def one_message(address: tuple[str, int], n: int, rcpts: int) -> int:
    """One SMTP session carrying one message; returns the callbacks it caused."""
    client = MilterClient(address)
    try:
        ip = f"198.51.100.{n % 200 + 1}"
        assert client.connect(f"host{n % 200}.example.net", ip) == b"c"
        assert client.helo(f"host{n % 200}.example.net") == b"c"
        login = {"{auth_authen}": f"user{n % 50}@example.net"} if n % 2 else {}
        client.macros(b"M", {"i": f"Q{n:08X}", **login})
        assert client.mail(f"<user{n % 50}@example.net>") == b"c"
        for r in range(rcpts):
            assert client.rcpt(f"<rcpt{r}.{n}@example.org>") == b"c"
        for name, value in HEADERS:
            client.header(name, value)
        client.eoh()
        client.body(BODY)
        assert client.eom() in (b"c", b"a")
        return client.callbacks
    finally:
        client.close()


# --- the two milters --------------------------------------------------------------------------


NOOP_MILTER = """
import sys, Milter
class Noop(Milter.Base):
    @Milter.noreply
    def connect(self, hostname, family, hostaddr): return Milter.CONTINUE
    @Milter.noreply
    def hello(self, name): return Milter.CONTINUE
    def envfrom(self, f, *params): return Milter.CONTINUE
    def envrcpt(self, to, *params): return Milter.CONTINUE
    @Milter.noreply
    def header(self, name, value): return Milter.CONTINUE
    @Milter.noreply
    def body(self, chunk): return Milter.CONTINUE
    def eom(self): return Milter.CONTINUE
Milter.factory = Noop
Milter.runmilter("noop", sys.argv[1], 30)
"""

CONFIG = """
[general]
hostname = "bench.example"
log_level = "warning"
[store]
url = "sqlite:///{db}"
spool_dir = "{spool}"
[milter]
socket = "inet:{port}@127.0.0.1"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_accepting(address: tuple[str, int], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"milter exited with status {proc.returncode}")
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"milter on {address} did not start")


@contextmanager
def running(argv: list[str], address: tuple[str, int]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, cwd=REPO)
    try:
        wait_accepting(address, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- measuring -------------------------------------------------------------------------------


def sequential(address: tuple[str, int], first: int, messages: int,
               rcpts: int) -> tuple[list[float], int, float]:
    """Per-message latencies, callbacks caused, elapsed seconds."""
    latencies: list[float] = []
    callbacks = 0
    start = time.perf_counter()
    for n in range(first, first + messages):
        t0 = time.perf_counter()
        callbacks += one_message(address, n, rcpts)
        latencies.append(time.perf_counter() - t0)
    return latencies, callbacks, time.perf_counter() - start


def concurrent(address: tuple[str, int], first: int, messages: int, rcpts: int,
               threads: int) -> tuple[list[float], int, float]:
    counter = iter(range(first, first + messages))
    lock = threading.Lock()
    totals = [0]

    def worker() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            got = one_message(address, n, rcpts)
            with lock:
                totals[0] += got

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return [], totals[0], time.perf_counter() - start


Run = Callable[[tuple[str, int], int, int, int], tuple[list[float], int, float]]


def compare(targets: dict[str, tuple[str, int]], run: Run, args: argparse.Namespace
            ) -> dict[str, dict[str, float]]:
    """Alternate the milters round by round, so drift on a shared machine hits both alike."""
    per_round = max(args.messages // args.rounds, 1)
    lat: dict[str, list[float]] = {name: [] for name in targets}
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
    for r in range(args.rounds):
        for name, address in targets.items():
            latencies, callbacks, elapsed = run(address, r * per_round, per_round, args.rcpts)
            lat[name] += latencies
            rates[name].append((per_round / elapsed, callbacks / elapsed))
    out: dict[str, dict[str, float]] = {}
    for name in targets:
        result = {"msgs_s": statistics.median(m for m, _ in rates[name]),
                  "callbacks_s": statistics.median(c for _, c in rates[name])}
        if lat[name]:
            ordered = sorted(lat[name])
            result["p50_ms"] = statistics.median(ordered) * 1000
            result["p99_ms"] = ordered[int(len(ordered) * 0.99) - 1] * 1000
        out[name] = result
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="per milter and mode")
    parser.add_argument("--rcpts", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="extrusion-bench-") as tmp:
        noop_port, ext_port = free_port(), free_port()
        cfg = Path(tmp) / "extrusion.toml"
        cfg.write_text(CONFIG.format(db=Path(tmp) / "bench.db", spool=Path(tmp) / "spool",
                                     port=ext_port))
        targets = {"no-op milter": ("127.0.0.1", noop_port),
                   "extrusion milter": ("127.0.0.1", ext_port)}
        with running([PYTHON, "-c", NOOP_MILTER, f"inet:{noop_port}@127.0.0.1"],
                     targets["no-op milter"]), \
             running([str(Path(PYTHON).parent / "extrusion"), "milter", "--config", str(cfg)],
                     targets["extrusion milter"]):
            for address in targets.values():  # warm up: connections, SQLite, engine caches
                sequential(address, 10_000_000, 100, args.rcpts)
            results = {
                "sequential": compare(targets, sequential, args),
                f"{args.concurrency} concurrent sessions": compare(
                    targets, lambda a, f, m, r: concurrent(a, f, m, r, args.concurrency), args),
            }

    print(f"{args.messages} messages per milter and mode, {args.rcpts} recipients each, "
          f"one SMTP session per message, in {args.rounds} alternating rounds; loopback, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for label, pair in results.items():
        print(f"\n{label}:")
        print(f"  {'':18} {'p50 ms':>8} {'p99 ms':>8} {'msgs/s':>9} {'callbacks/s':>12}")
        for who, r in pair.items():
            p50 = f"{r['p50_ms']:8.3f}" if "p50_ms" in r else f"{'':8}"
            p99 = f"{r['p99_ms']:8.3f}" if "p99_ms" in r else f"{'':8}"
            print(f"  {who:18} {p50} {p99} {r['msgs_s']:9.0f} {r['callbacks_s']:12.0f}")
        noop, ext = pair["no-op milter"], pair["extrusion milter"]
        print(f"  ratio extrusion/no-op throughput: {ext['msgs_s'] / noop['msgs_s']:.2f}")
        if "p50_ms" in ext:
            print(f"  added latency per message: p50 {ext['p50_ms'] - noop['p50_ms']:+.3f} ms, "
                  f"p99 {ext['p99_ms'] - noop['p99_ms']:+.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
