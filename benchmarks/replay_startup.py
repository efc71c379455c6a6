"""The fixed cost of `extrusion replay --json` (an empty log: start-up, store, end), two trees.

    .venv/bin/python benchmarks/replay_startup.py --base main [--runs 10] [--instructions]

Runs `extrusion replay --json EMPTY` for REV's package (`git archive`) and this
checkout's, alternately, `--runs` times each, and prints each tree's best and median
CPU seconds (the command and its reader child, from getrusage) and their ratio. Both
trees are byte-compiled first, as an installed package is (PYTHONDONTWRITEBYTECODE
would otherwise make every run compile its sources). With `--instructions`, one run of
each under `valgrind --tool=cachegrind --cache-sim=no` (PYTHONHASHSEED=0): the
instructions of the command and of its reader child, steady on a loaded machine.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from trees import REPO, export

CONFIG = '[general]\nlog_level = "warning"\n'


def command(tmp: Path) -> list[str]:
    return [sys.executable, "-m", "extrusion.cli", "replay", "--config",
            str(tmp / "extrusion.toml"), "--json", str(tmp / "empty.log")]


def env_for(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def cpu_once(tree: Path, tmp: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command(tmp), env=env_for(tree), cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def instructions(tree: Path, tmp: Path) -> list[int]:
    """Instructions of each process of one run (the command first, then its child)."""
    out = tmp / f"cg-{tree.name}"
    out.mkdir()
    subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes",
                    f"--cachegrind-out-file={out}/cg.%p", *command(tmp)],
                   env=env_for(tree), cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts = []
    for f in sorted(out.iterdir(), key=lambda p: int(p.suffix[1:])):
        m = re.search(r"^summary: (\d+)", f.read_text(), re.M)
        counts.append(int(m.group(1)) if m else 0)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, metavar="REV")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--instructions", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-startup-") as d:
        tmp = Path(d)
        (tmp / "extrusion.toml").write_text(CONFIG)
        (tmp / "empty.log").write_text("")
        base = export(args.base, tmp / "base")
        mine = tmp / "checkout"
        shutil.copytree(REPO / "extrusion", mine / "extrusion")
        for tree in (base, mine):
            compileall.compile_dir(tree, quiet=1)
        cpu: dict[Path, list[float]] = {base: [], mine: []}
        for _ in range(args.runs):
            for tree in (base, mine):
                cpu[tree].append(cpu_once(tree, tmp))
        for tree, name in ((base, args.base), (mine, "checkout")):
            v = sorted(cpu[tree])
            print(f"{name}: CPU best {v[0]:.3f} s, median {v[len(v) // 2]:.3f} s")
        b, m = sorted(cpu[base]), sorted(cpu[mine])
        print(f"checkout / {args.base}: best {m[0] / b[0]:.3f}x, "
              f"median {m[len(m) // 2] / b[len(b) // 2]:.3f}x")
        if args.instructions:
            ib, im = instructions(base, tmp), instructions(mine, tmp)
            print(f"instructions {args.base}: {ib}; checkout: {im}; "
                  f"total {sum(im) / sum(ib):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
