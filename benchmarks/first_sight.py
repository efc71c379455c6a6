"""`decide()` at a sender's first sight and again, the engine alone on a big SQLite store.

    .venv/bin/python benchmarks/first_sight.py --store /tmp/fs/s1000000.db [--senders 1000000]
    git archive e033c12 extrusion | tar -x -C /tmp/fs/main     # another tree, side by side:
    PYTHONPATH=/tmp/fs/main .venv/bin/python benchmarks/first_sight.py --store /tmp/fs/s1000000.db
    ... --freeze    # the heap frozen after the engine opened, as the daemon's once started

The in-process half of benchmarks/scale.py, without its daemon and prune, so
that two trees can be run one after the other on one store (filled by
scale.py's `fill` on the first run, kept for the next): open the engine, then
100,000 `decide()`s at RCPT for random stored senders, twice. Prints the rate
by the clock and by this process's CPU time, and which `extrusion` it ran.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from pathlib import Path

from scale import DECIDES, NOW, fill

import extrusion
from extrusion.config import from_dict
from extrusion.scoring.engine import open_engine
from extrusion.scoring.events import Stage
from extrusion.scoring.rows import Batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--senders", type=int, default=1_000_000)
    ap.add_argument("--freeze", action="store_true",
                    help="freeze the heap after opening the engine, as the daemon does once "
                         "started (extrusion.policyd.daemon.settle_heap)")
    args = ap.parse_args()
    url = f"sqlite:///{args.store}"
    if not args.store.exists():
        fill(url, args.senders)
    cfg = from_dict({"store": {"url": url, "spool_dir": f"{args.store}.spool"}})
    engine = open_engine(cfg)
    if args.freeze:  # written out, not imported: the tree measured may be one without it
        gc.collect()
        gc.freeze()
    rnd = random.Random(5)
    keys = [f"sasl:customer{rnd.randrange(args.senders)}" for _ in range(DECIDES)]
    print(f"extrusion from {Path(extrusion.__file__).parent}", file=sys.stderr)
    try:
        for what in ("first sight", "again"):
            t0, c0 = time.perf_counter(), time.process_time()
            for k in keys:
                engine.decide(k, Stage.RCPT, 1, now=NOW)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"{what:>12}: {DECIDES / wall:>9,.0f}/s by the clock, "
                  f"{DECIDES / cpu:>9,.0f}/s by CPU ({cpu:.2f} s)")
    finally:
        engine._batch = Batch()  # nothing of the measurement goes into the store
        engine.close()


if __name__ == "__main__":
    main()
