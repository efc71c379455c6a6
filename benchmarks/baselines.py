"""What keeping each sender's baseline in the store costs a replay: side by side.

    .venv/bin/python benchmarks/baselines.py [--customers 500] [--days 1] [--repeat 3]

Generates a population log (`extrusion_dev.population`), then replays it
in this process with the shipped config (a throw-away SQLite store, inline,
no worker process), interleaved and best of `--repeat`: once as shipped, once
with `Store.save_baselines` made a no-op (the engine as it was before the
baselines were kept). Prints both wall times, the ratio and how many
baselines the store holds after the shipped run.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extrusion.config import load  # noqa: E402
from extrusion.replay.command import replay  # noqa: E402
from extrusion.scoring.store import Store  # noqa: E402
from extrusion_dev.population import populate  # noqa: E402


def once(log: Path, store: Path, keep: bool) -> float:
    cfg = load(REPO / "conf" / "extrusion.toml")
    real = Store.save_baselines

    def skip(self: Store, baselines: dict[str, dict[str, Any]], now: float) -> None:
        return None

    if not keep:
        Store.save_baselines = skip  # type: ignore[method-assign]
    try:
        store.unlink(missing_ok=True)
        started = time.perf_counter()
        status = replay(cfg, [str(log)], store_url=f"sqlite:///{store}", out=io.StringIO(),
                        err=io.StringIO(), progress=False, parallel=False)
        elapsed = time.perf_counter() - started
    finally:
        Store.save_baselines = real  # type: ignore[method-assign]
    if status != 0:
        raise SystemExit(f"replay failed with status {status}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-baselines-") as tmp:
        log, store = Path(tmp) / "mail.log", Path(tmp) / "replay.db"
        with open(log, "w", encoding="utf-8") as f:
            pop = populate(f, customers=args.customers, days=args.days, seed=args.seed)
        best = {True: float("inf"), False: float("inf")}
        for _ in range(args.repeat):
            for keep in (False, True):
                best[keep] = min(best[keep], once(log, store, keep))
        kept = len(Store(f"sqlite:///{store}").baselines(10**9))
    print(f"{args.customers} customers over {args.days:g} days, seed {args.seed}: "
          f"{pop.messages:,} messages, {pop.lines:,} lines; best of {args.repeat}")
    print(f"  replay without keeping baselines: {best[False]:.2f} s")
    print(f"  replay keeping baselines:         {best[True]:.2f} s "
          f"({best[True] / best[False]:.2f}x; {kept:,} baselines stored)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
