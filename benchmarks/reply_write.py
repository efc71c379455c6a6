"""The reply write's CPU on the reactor thread: Twisted's `write()` against the daemon's
send at once, on the do-nothing server (benchmarks/pyfloor.py's "dunno"), alternated.

    .venv/bin/python benchmarks/reply_write.py [--pairs 3] [--connections 16] [--requests 30000]

`write()` queues a reply for the reactor's next turn: an epoll registration for
writability, a write event, and another registration to drop it, per reply.
`extrusion.policyd.replysend.send_reply` sends on the socket at once when nothing is
queued before it (the daemon calls it for a reactor turn's replies at the turn's
end; here each reply is sent as it is answered). Both servers take benchmarks/policyd.py's
stream from its client; printed per run: requests/s, p99 and the server's main-thread
CPU per request, then the medians and the ratio send-at-once / write().
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from policyd import FLOOR_SERVER, free_port, measure, stream, wait_port

MODES = {"write()": [], "send at once": ["--send-now"]}


def run(extra: list[str], reqs: list[bytes], warm: list[bytes], connections: int) -> tuple[
        float, float, float]:
    """(requests/s, p99 ms, main-thread CPU us per request) of one floor server run."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FLOOR_SERVER), "dunno",
                             "--listen", f"tcp:{port}:interface=127.0.0.1", *extra])
    try:
        wait_port(port, proc)
        r = measure("floor", port, reqs, connections, warm, proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    assert r.main_cpu is not None
    return r.rate, r.pct(0.99), r.main_cpu / len(reqs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--requests", type=int, default=30000)
    args = ap.parse_args()
    reqs, warm = stream(args.requests), stream(2000, seed=2)
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    for pair in range(1, args.pairs + 1):
        for mode, extra in MODES.items():
            rate, p99, us = run(extra, reqs, warm, args.connections)
            cpu[mode].append(us)
            print(f"pair {pair} {mode:13s} {rate:7.0f} req/s  p99 {p99:6.2f} ms  "
                  f"main thread {us:5.1f} us/request", flush=True)
    before, after = (statistics.median(v) for v in cpu.values())
    print(f"medians: write() {before:.1f} us, send at once {after:.1f} us: "
          f"{after / before:.2f}x")


if __name__ == "__main__":
    main()
