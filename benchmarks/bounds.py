"""What bounding every value costs a flush: `bound_batch()` beside the write it guards.

The engine's real batches (benchmarks/engine.py's event mix: submissions with
HELO, one outcome per recipient, 5,000 events a flush) are captured, then
timed side by side on the same batches: `bound_batch()` alone, and
`Store.write_batch()` (which bounds first) into a durable SQLite store.
Values are all within bounds, the common case: nothing is copied.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from engine import T0, config, events  # benchmarks/engine.py

from extrusion.scoring.bounds import bound_batch
from extrusion.scoring.engine import Engine
from extrusion.scoring.rows import Batch
from extrusion.scoring.store import Store

RUNS = 5


def captured_batches(n: int, tmp: str) -> list[Batch]:
    """The batches an engine hands its store for ~n events, flushed every 5,000."""
    url = f"sqlite:///{tmp}/capture.db"
    store = Store(url)
    seen: list[Batch] = []
    real = store.write_batch

    def capture(batch: Batch, half_life: float) -> list:  # type: ignore[type-arg]
        seen.append(batch)
        return real(batch, half_life)

    store.write_batch = capture  # type: ignore[method-assign]
    engine = Engine(config(url, f"{tmp}/spool"), store, lambda: T0)
    for k, ev in enumerate(events(n), 1):
        (engine.submission if hasattr(ev, "recipients") else engine.outcome)(ev)  # type: ignore[operator]
        if k % 5000 == 0:
            engine.flush()
    engine.close()
    store.close()
    return seen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=50_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        batches = captured_batches(args.events, tmp)
        rows = sum(len(b) for b in batches)
        bound_best = write_best = float("inf")
        for run in range(RUNS):
            start = time.perf_counter()
            for b in batches:
                assert bound_batch(b) is b
            bound_best = min(bound_best, time.perf_counter() - start)
            with Store(f"sqlite:///{tmp}/run{run}.db") as store:
                start = time.perf_counter()
                for b in batches:
                    store.write_batch(b, 3600.0)
                write_best = min(write_best, time.perf_counter() - start)
    print(f"{len(batches)} batches, {rows:,} rows, best of {RUNS}")
    print(f"  bound_batch():        {bound_best * 1e6 / rows:6.2f} us/row")
    print(f"  write_batch(), SQLite: {write_best * 1e6 / rows:6.2f} us/row (bounding included)")
    print(f"  ratio write / bound:  {write_best / bound_best:6.1f}x  "
          f"(bounding is {100 * bound_best / write_best:.1f}% of a flush)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
