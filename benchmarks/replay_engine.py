"""The engine's side of `extrusion replay`: its process's CPU seconds and peak memory, two trees.

    .venv/bin/python benchmarks/replay_engine.py --log PATH [--base REV] [--repeat 2] \
        [--one-process]

`extrusion replay` parses the log in a child process and runs the engine and
its store in its own (replay/parallel.py). `benchmarks/replay.py` times the
whole command; this one splits it: each run is `replay.command.replay(...)`
called in a fresh process whose own CPU time and peak RSS
(`getrusage(RUSAGE_SELF)`) are the engine's side, the log reader's being its
reaped child (`RUSAGE_CHILDREN`). Runs the checkout and `--base` (a git
revision, `git archive` of its `extrusion`, by default the merge base with
main) interleaved, best of `--repeat`, and prints both sides of each with
the ratio of the checkout to the base. `--one-process` adds the checkout with
the log read in the engine's own process (`replay(parallel=False)`): fewer CPU
seconds in all (no pickles, no second interpreter), one core.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The checkout again, its log read in the engine's own process (`--one-process`).
ONE = "checkout, one process"


def child(log: str, config: str, processes: str = "2") -> None:
    """One replay in this process (the tree on PYTHONPATH); its usage as one JSON line.
    `processes` "1": the log is read in this process too (no child)."""
    from extrusion.config.load import load
    from extrusion.replay.command import replay

    with open(os.devnull, "w") as sink:
        status = replay(load(config), [log], as_json=True, out=sink, err=sink,
                        progress=False, parallel=processes != "1")
    me = resource.getrusage(resource.RUSAGE_SELF)
    reader = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"status": status, "engine": me.ru_utime + me.ru_stime,
                      "rss": me.ru_maxrss / 1024,
                      "reader": reader.ru_utime + reader.ru_stime}))


def measure(tree: Path, log: Path, config: Path, processes: str = "2") -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # -P: not this folder first on sys.path (its milter.py, engine.py... would shadow).
    out = subprocess.run([sys.executable, "-P", __file__, "--child", str(log), str(config),
                          processes],
                         cwd=tree, env=env, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    if result["status"] != 0:
        raise SystemExit(f"replay in {tree} failed: {out.stderr[-2000:]}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path)
    ap.add_argument("--base", default=None, help="git revision (default: merge-base with main)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--one-process", action="store_true",
                    help="also the checkout with the log read in the engine's process")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.log is None:
        ap.error("--log is required")
    sys.path.insert(0, str(REPO))
    from benchmarks.trees import export

    base = args.base or subprocess.run(
        ["git", "-C", str(REPO), "merge-base", "HEAD", "main"],
        capture_output=True, text=True, check=True).stdout.strip()
    with open(args.log, "rb") as f:
        lines = sum(1 for _ in f)
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        config = Path(tmp) / "extrusion.toml"
        config.write_text('[general]\nlog_level = "warning"\n')
        trees = {f"base {base[:12]}": export(base, Path(tmp) / "base"), "checkout": REPO}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        if args.one_process:
            runs[ONE] = []
        for _ in range(args.repeat):
            for name in runs:
                one = name == ONE
                runs[name].append(measure(REPO if one else trees[name], args.log.resolve(),
                                          config, "1" if one else "2"))
    print(f"log: {lines:,} lines; best of {args.repeat}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    best = table(runs, lines)
    old, new = best[f"base {base[:12]}"], best["checkout"]
    print(f"\nengine CPU {new['engine'] / old['engine']:.2f}x the base's, "
          f"peak RSS {new['rss'] / old['rss']:.2f}x")


def table(runs: dict[str, list[dict[str, float]]], lines: int) -> dict[str, dict[str, float]]:
    """Print the best of each tree's runs; return them."""
    print("| tree | engine CPU s | lines per engine CPU s | engine peak RSS MB "
          "| reader CPU s | both CPU s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    best = {name: {k: min(r[k] for r in rs) for k in ("engine", "rss", "reader")}
            for name, rs in runs.items()}
    for name, rs in runs.items():
        b = best[name]
        both = min(r["engine"] + r["reader"] for r in rs)
        print(f"| {name} | {b['engine']:.2f} | {lines / b['engine']:,.0f} | {b['rss']:.0f} "
              f"| {b['reader']:.2f} | {both:.2f} |")
    return best


if __name__ == "__main__":
    main()
