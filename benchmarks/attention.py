"""`Engine.attention()` with many senders in memory: the pass it was against the kept index.

    .venv/bin/python benchmarks/attention.py [--sizes 10000,100000,1000000] [--attended 1000]
    git archive <base> extrusion | tar -x -C /tmp/attention-base      # decide() beside it:
    .venv/bin/python benchmarks/attention.py --base /tmp/attention-base

The milter-attach socketmap asks the engine who is under attention every
`attach_refresh_seconds` (extrusion/milter/attach.py), under the engine's lock
that every policy request waits for. For each size, an engine (SQLite store
in a temp dir, no cap on senders in memory) is given that many senders by
`decide()`, `--attended` of them held by the operator; then, side by side in
this process:

- the pass the engine made before: `attention_of()` over every sender, under the lock;
- `attention()` as kept now, unchanged since it was last asked (the usual refresh);
- `attention()` right after a sender changed state (the answer made again from the index).

With `--base`, `decide()` CPU per request too: child processes on this tree and on
the base tree, alternated, each filling an engine with `--decide-senders` senders
(`--attended` held) and timing `--decides` RCPT decisions by its CPU time (known
senders at their own address, one in ten new); the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import extrusion
from extrusion.config import from_dict
from extrusion.scoring.attention import attention_of
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import OperatorAction, OperatorVerb, Stage
from extrusion.scoring.rows import Batch

NOW = 1_700_000_000.0
REPEATS = 7
HERE = Path(__file__).resolve().parent


def address(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def filled(tmp: str, senders: int, attended: int) -> Engine:
    """An engine holding `senders` senders in memory, `attended` of them held."""
    cfg = from_dict({"store": {"url": f"sqlite:///{tmp}/s.db", "spool_dir": f"{tmp}/spool"},
                     "scoring": {"max_senders": 0}})
    engine = open_engine(cfg, lambda: NOW)
    for i in range(senders):
        a = address(i)
        engine.decide(f"ip:{a}", Stage.RCPT, 1, NOW, client_addr=a, recipient="x@example.org")
    step = max(senders // max(attended, 1), 1)
    for i in range(0, step * attended, step):
        engine.operator(OperatorAction(NOW, f"ip:{address(i)}", OperatorVerb.HOLD, "bench",
                                       "attention"))
    return engine


def discard(engine: Engine) -> None:
    """Closed without writing the benchmark's senders to its throw-away store."""
    book = getattr(engine, "_book", None)
    if book is not None:
        book.dirty.clear()
    engine._batch = Batch()
    engine.close()


def best(f: Callable[[], object], repeats: int = REPEATS) -> float:
    """Seconds of the fastest of `repeats` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def attention_side_by_side(sizes: list[int], attended: int) -> None:
    print(f"attention(): {attended} senders held, best of {REPEATS}; extrusion from "
          f"{Path(extrusion.__file__).parent}")
    print(f"{'senders':>10} {'old pass ms':>12} {'kept, unchanged us':>19} "
          f"{'kept, after a change us':>24} {'old / after a change':>21}")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="attention-") as tmp:
            engine = filled(tmp, n, attended)
            try:
                old, unchanged, after = measure(engine, n)
            finally:
                discard(engine)
        print(f"{n:>10,} {old * 1e3:>12.2f} {unchanged * 1e6:>19.3f} "
              f"{after * 1e6:>24.1f} {old / after:>20,.0f}x")


def measure(engine: Engine, n: int) -> tuple[float, float, float]:
    """Seconds of the old pass, of the kept answer unchanged, and of it after a change."""

    def old_pass() -> object:
        with engine._lock:
            return attention_of(engine._senders.values())

    assert engine.attention() == old_pass(), "the kept answer differs from the pass"
    old = best(old_pass)
    unchanged = best(engine.attention, 1000)
    changed = []
    for r in range(REPEATS):
        verb = OperatorVerb.RELEASE if r % 2 else OperatorVerb.HOLD
        engine.operator(OperatorAction(NOW, f"ip:{address(n - 1)}", verb, "bench", "change"))
        changed.append(best(engine.attention, 1))
    return old, unchanged, min(changed)


def decide_child(senders: int, attended: int, decides: int) -> None:
    """One measurement of decide() CPU per request, printed as JSON (run in a child)."""
    with tempfile.TemporaryDirectory(prefix="attention-decide-") as tmp:
        engine = filled(tmp, senders, attended)
        try:
            keys = [(f"ip:{address(i * 7919 % senders)}", address(i * 7919 % senders))
                    if i % 10 else (f"ip:{address(senders + i)}", address(senders + i))
                    for i in range(decides)]
            c0 = time.process_time()
            for key, a in keys:
                engine.decide(key, Stage.RCPT, 1, NOW, client_addr=a, recipient="y@example.org")
            cpu = time.process_time() - c0
        finally:
            discard(engine)
    print(json.dumps({"us": cpu / decides * 1e6, "tree": str(Path(extrusion.__file__).parent)}))


def decide_side_by_side(base: Path, senders: int, attended: int, decides: int,
                        rounds: int) -> None:
    trees = {"base": base.resolve(), "new": HERE.parent}
    got: dict[str, list[float]] = {"base": [], "new": []}
    for r in range(rounds):
        for name in (("base", "new") if r % 2 == 0 else ("new", "base")):
            env = {**os.environ, "PYTHONPATH": str(trees[name])}
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--child", str(senders),
                 str(attended), str(decides)],
                env=env, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            assert Path(result["tree"]).parent == trees[name], result
            got[name].append(result["us"])
    b, n = statistics.median(got["base"]), statistics.median(got["new"])
    print(f"decide() CPU per request, {senders:,} senders in memory, {attended} held, "
          f"{decides:,} decides, {rounds} rounds alternated:")
    for name in ("base", "new"):
        print(f"  {name:4} median {statistics.median(got[name]):.2f} us, best "
              f"{min(got[name]):.2f} (rounds {', '.join(f'{x:.2f}' for x in got[name])})")
    print(f"  new / base = {n / b:.3f} by the medians, "
          f"{min(got['new']) / min(got['base']):.3f} by the best rounds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--attended", type=int, default=1000)
    ap.add_argument("--base", type=Path, help="the base tree (git archive), for decide()")
    ap.add_argument("--decide-senders", type=int, default=100_000)
    ap.add_argument("--decides", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        decide_child(*args.child)
        return
    if args.sizes:
        attention_side_by_side([int(s) for s in args.sizes.split(",")], args.attended)
    if args.base is not None:
        decide_side_by_side(args.base, args.decide_senders, args.attended, args.decides,
                            args.rounds)


if __name__ == "__main__":
    main()
