"""Engine memory against distinct senders, with and without `[scoring] max_senders`.

    .venv/bin/python benchmarks/memory.py                      # 10k and 100k senders
    .venv/bin/python benchmarks/memory.py --senders 10000 100000 1000000
    .venv/bin/python benchmarks/memory.py --cap 0 --cap 20000  # which caps (0 = none)
    PYTHONPATH=/tmp/extrusion-main .venv/bin/python benchmarks/memory.py --cap -1

Each distinct sender makes one policy request at RCPT (what an MX sees from
every Internet sender); the engine flushes to a SQLite store every 5,000
senders, as the policy daemon's sync does every few seconds. Every figure
comes from a fresh child process: the growth of its resident set (VmRSS) over
the run, and, in a second child, the bytes tracemalloc sees still allocated
per sender (what the engine keeps, not the allocator's slack). Queued rows are
flushed before measuring, so only what stays per sender counts.

To compare with an older tree (`git archive main extrusion | tar -x -C
/tmp/extrusion-main`), point PYTHONPATH at it and pass `--cap -1`: the
`max_senders` key, which an older config refuses, is then left out.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

T0 = 1_700_000_000.0
FLUSH_EVERY = 5_000


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def child(senders: int, cap: int, trace: bool) -> dict[str, float]:
    from extrusion.config import from_dict
    from extrusion.scoring.engine import Engine
    from extrusion.scoring.events import Stage
    from extrusion.scoring.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        scoring = {"max_senders": cap} if cap >= 0 else {}
        cfg = from_dict({"general": {"hostname": "bench"},
                         "store": {"url": f"sqlite:///{tmp}/s.db", "spool_dir": tmp,
                                   "flush_batch": 10**9},
                         **({"scoring": scoring} if scoring else {})})
        now = [T0]
        engine = Engine(cfg, Store(cfg.store.url), lambda: now[0])
        engine.flush()
        gc.collect()
        if trace:
            tracemalloc.start()
        before_rss = rss_bytes()
        before_traced = tracemalloc.get_traced_memory()[0] if trace else 0
        started = time.perf_counter()
        for i in range(senders):
            now[0] = T0 + i * 0.01
            key = f"ip:10.{i // 65536}.{i // 256 % 256}.{i % 256}"
            engine.decide(key, Stage.RCPT, 1, now[0], client_addr=key[3:],
                          envelope_from=f"u{i}@example{i % 50}.com",
                          recipient=f"r{i}@dest{i % 77}.org")
            if i % FLUSH_EVERY == FLUSH_EVERY - 1:
                engine.flush()
        engine.flush()
        elapsed = time.perf_counter() - started
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before_traced if trace else 0
        grown = rss_bytes() - before_rss
        in_memory = engine.status()["senders"]
        engine.close()
    return {"senders": senders, "cap": cap, "in_memory": in_memory,
            "rss_mb": grown / 2**20, "rss_per_sender": grown / senders,
            "traced_per_sender": traced / senders, "seconds": elapsed}


def run(senders: int, cap: int, trace: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(senders), str(cap), str(int(trace))],
        check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--senders", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--cap", type=int, action="append",
                   help="max_senders to compare (0 = no cap, -1 = leave the key out); "
                        "default 0 and 20000")
    p.add_argument("--trace-max", type=int, default=100_000,
                   help="tracemalloc only up to this many senders (it triples the run time)")
    p.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], bool(args.child[2]))))
        return 0
    caps = args.cap or [0, 20_000]
    print("| senders | max_senders | in memory | RSS growth | RSS / sender "
          "| tracemalloc / sender | seconds |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.senders:
        for cap in caps:
            r = run(n, cap, trace=False)
            traced = run(n, cap, trace=True)["traced_per_sender"] if n <= args.trace_max else None
            name = {0: "none", -1: "(no key)"}.get(cap, f"{cap:,}")
            print(f"| {n:,} | {name} | {int(r['in_memory']):,} | "
                  f"{r['rss_mb']:.0f} MB | {r['rss_per_sender']:,.0f} B | "
                  f"{'' if traced is None else f'{traced:,.0f} B'} | {r['seconds']:.0f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
