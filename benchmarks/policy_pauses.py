"""The policy request path's pauses behind the store's flush thread, by switch interval.

    .venv/bin/python benchmarks/policy_pauses.py [--requests 60000] [--rounds 3]
        [--intervals off,5,1]

One process, no sockets: the daemon's protocol, parser, responder and engine (the
config of benchmarks/policyd.py, SQLite in a temp dir) answer 16 connections over
Twisted's StringTransport in turns, as the reactor serves the connections that are
ready, and release the GIL between turns as the reactor does in epoll; meanwhile a
thread does what the daemon's maintenance does on its pool thread: `flush()` every
`[policyd] flush_seconds`, `refresh()` every `[store] refresh_seconds`, on the real
clock. A request's latency is from its turn's start to its reply. The run is repeated
at each `sys.setswitchinterval` given (milliseconds; CPython's default is 5) and
without the flush thread ("off": what the machine's load alone does), alternated, so
that the GIL waits a flush puts on the requests show without the client and the
network (benchmarks/policyd.py measures those too).
"""

from __future__ import annotations

import argparse
import gc
import os
import select
import sys
import tempfile
import threading
import time
from pathlib import Path

from policyd import EXTRUSION_CONFIG, stream, string_connections
from twisted.internet import task

from extrusion.config.load import load
from extrusion.policyd.daemon import settle_heap
from extrusion.scoring.engine import open_engine

CONNECTIONS = 16


class Pauses:
    """The measured run's stalls: the GIL waited for at each turn's start (the time
    `select` took to come back), and the collector's passes by generation, timed."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.collections: list[tuple[int, float]] = []
        self._started = 0.0
        self.on = False

    def gc_callback(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.collections.append((info["generation"], time.perf_counter() - self._started))

    def summary(self) -> str:
        long = [w for w in self.waits if w > LONG_WAIT]
        gcs = []
        for g in range(3):
            took = [t for gen, t in self.collections if gen == g]
            if took:
                gcs.append(f"gen{g} {len(took)}x max {max(took) * 1000:.1f}")
        return (
            f"GIL waits > {LONG_WAIT * 1000:g} ms: {len(long)}, {sum(long) * 1000:.0f} ms, "
            f"max {max(self.waits, default=0) * 1000:.1f}; collections: {', '.join(gcs)}"
        )


#: A turn's wait for the GIL counted as a pause (the select itself takes microseconds).
LONG_WAIT = 0.0005


def maintain(
    engine: object, flush_seconds: float, refresh_seconds: float, stop: threading.Event
) -> None:
    """The maintenance thread's store work (EngineService._sync): flush, refresh when due."""
    next_refresh = 0.0
    while not stop.wait(flush_seconds):
        engine.flush()  # type: ignore[attr-defined]
        now = time.time()
        if now >= next_refresh:
            engine.refresh(now)  # type: ignore[attr-defined]
            next_refresh = now + refresh_seconds


def once(
    tmp: Path, reqs: list[bytes], warm: list[bytes], interval: float | None, pauses: Pauses
) -> dict[str, float]:
    """One run at switch `interval` (seconds); None: CPython's default and no flush thread,
    what the machine's load alone does to the latencies."""
    conf = tmp / "pauses.toml"
    conf.write_text(EXTRUSION_CONFIG.format(tmp=tmp, port=0, api_port=0))
    config = load(conf)
    engine = open_engine(config)
    settle_heap()  # as the daemon does once ready, before any request
    clock = task.Clock()
    clock.advance(time.time())
    conns = string_connections(engine, clock, time.time, CONNECTIONS)

    def serve(todo: list[bytes], lat: list[float] | None) -> None:
        pc = time.perf_counter
        for start in range(0, len(todo), CONNECTIONS):
            t0 = pc()
            select.select([], [], [], 0)  # the reactor's epoll: the GIL is let go
            if lat is not None:
                pauses.waits.append(pc() - t0)
            turn = todo[start : start + CONNECTIONS]
            for (proto, transport), req in zip(conns, turn, strict=False):
                proto.dataReceived(req)
                transport.clear()
                if lat is not None:
                    lat.append(pc() - t0)

    before = sys.getswitchinterval()
    stop = threading.Event()
    worker = threading.Thread(
        target=maintain,
        args=(engine, config.policyd.flush_seconds, config.store.refresh_seconds, stop),
    )
    try:
        serve(warm, None)
        if interval is not None:
            sys.setswitchinterval(interval)
            worker.start()
        lat: list[float] = []
        pauses.on = True
        cpu0, t0 = time.process_time(), time.perf_counter()
        serve(reqs, lat)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        pauses.on = False
        stop.set()
        if worker.is_alive():
            worker.join()
        sys.setswitchinterval(before)
        engine.close()
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return {
        "rate": len(lat) / seconds,
        "p50": pct(0.5),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "max": lat[-1] * 1000,
        "cpu_us": cpu / len(lat) * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=60000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--intervals",
        default="off,5,1",
        help="switch intervals to compare, in ms; off: no flush thread (at 5)",
    )
    args = ap.parse_args()
    intervals = [None if v == "off" else float(v) / 1000 for v in args.intervals.split(",")]
    reqs, warm = stream(args.requests), stream(2000, seed=2)
    print(
        f"{len(reqs)} requests, {CONNECTIONS} connections in turns, flush thread on; "
        "latency from a turn's start, ms"
    )
    print(
        f"{'round':>5} {'switch ms':>9} {'req/s':>7} {'p50':>6} {'p99':>6} {'p99.9':>6} "
        f"{'max':>6} {'CPU us/req':>10}  load"
    )
    for r in range(1, args.rounds + 1):
        for interval in intervals:
            pauses = Pauses()
            gc.callbacks.append(pauses.gc_callback)
            try:
                with tempfile.TemporaryDirectory() as d:
                    s = once(Path(d), reqs, warm, interval, pauses)
            finally:
                gc.callbacks.remove(pauses.gc_callback)
            label = "off" if interval is None else f"{interval * 1000:g}"
            print(
                f"{r:>5} {label:>9} {s['rate']:>7.0f} {s['p50']:>6.2f} "
                f"{s['p99']:>6.2f} {s['p999']:>6.2f} {s['max']:>6.2f} {s['cpu_us']:>10.1f}  "
                f"{os.getloadavg()[0]:.1f}"
            )
            print(f"{'':>16}{pauses.summary()}")


if __name__ == "__main__":
    main()
