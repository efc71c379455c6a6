"""The engine's side of `extrusion replay`: its process's CPU seconds and peak memory, two trees.

    .venv/bin/python benchmarks/replay_engine.py --log PATH [--base REV] [--repeat 2] \
        [--one-process | --stream FILE]

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

`--stream FILE` takes the reader and the pipe's timing out: the base's reader writes
its output stream to FILE once (kept for the next run; delete it when the log or the
stream's format changes), then each tree's engine side reads that file
in place of the reader's pipe (`run_parallel` as `extrusion replay` runs it, into
a fresh store), alternated; the engine's CPU seconds only, and the median and
spread of the ratio over the rounds beside the best of each.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The checkout again, its log read in the engine's own process (`--one-process`).
ONE = "checkout, one process"


class Recorded:
    """The reader's process as `run_parallel` sees it, its output read from a file."""

    def __init__(self, stream: str) -> None:
        self.stdout = open(stream, "rb")  # noqa: SIM115 (closed by run_parallel)
        self.stderr = io.BytesIO()

    def poll(self) -> int:
        return 0

    def wait(self) -> int:
        return 0


def from_stream(stream: str) -> Any:
    """A stand-in for `replay.parallel.reader_process`: the stream file if it exists;
    else the real reader, its output copied to the file first."""
    from extrusion.replay import parallel

    real = parallel.reader_process

    @contextmanager
    def reader(cfg: Any, logs: list[str], reference: float) -> Iterator[Any]:
        if not os.path.exists(stream):
            with real(cfg, logs, reference) as proc, open(stream + ".part", "wb") as out:
                assert proc.stdout is not None
                shutil.copyfileobj(proc.stdout, out)
                proc.wait()
            os.rename(stream + ".part", stream)
        yield Recorded(stream)

    return reader


def child(log: str, config: str, processes: str = "2") -> None:
    """One replay in this process (the tree on PYTHONPATH); its usage as one JSON line.
    `processes` "1": the log is read in this process too (no child); "stream:PATH":
    the reader's output is read from PATH (`from_stream`)."""
    from extrusion.config.load import load
    from extrusion.replay import command
    from extrusion.replay.command import replay

    if processes.startswith("stream:"):
        # The name `replay.command` imported from replay.parallel, where run() finds it.
        command.reader_process = from_stream(  # type: ignore[attr-defined]
            processes.removeprefix("stream:"))
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
    ap.add_argument("--stream", type=Path, default=None, metavar="FILE",
                    help="the engine sides only, fed the reader's output recorded in FILE")
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
        if args.stream:
            streamed(trees, args.log.resolve(), config, args.stream.resolve(), args.repeat)
            return
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


def streamed(trees: dict[str, Path], log: Path, config: Path, stream: Path,
             repeat: int) -> None:
    """`--stream`: each tree's engine side on the base reader's recorded output."""
    (base_name, base), (_, checkout) = trees.items()
    # Both trees' bytecode made before any run: the fresh export's first import would
    # otherwise compile it inside the base's first timing.
    for tree in (base, checkout):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "extrusion")],
                       check=True)
    if not stream.exists():
        measure(base, log, config, f"stream:{stream}")  # records it (the base's reader)
    pairs: list[tuple[float, float]] = []
    for i in range(repeat):
        # Each tree first in every other round: the machine's load drifts within a round.
        first, second = (base, checkout) if i % 2 == 0 else (checkout, base)
        a = measure(first, log, config, f"stream:{stream}")["engine"]
        b = measure(second, log, config, f"stream:{stream}")["engine"]
        old, new = (a, b) if first is base else (b, a)
        pairs.append((old, new))
        print(f"{base_name} {old:.2f} s, checkout {new:.2f} s: {new / old:.3f}x", flush=True)
    ratios = [new / old for old, new in pairs]
    old, new = min(p[0] for p in pairs), min(p[1] for p in pairs)
    print(f"\nengine CPU, best of {repeat}: {old:.2f} s -> {new:.2f} s ({new / old:.3f}x); "
          f"ratio median {statistics.median(ratios):.3f}x, "
          f"spread {min(ratios):.3f}-{max(ratios):.3f}x; load average {os.getloadavg()[0]:.1f}")


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
