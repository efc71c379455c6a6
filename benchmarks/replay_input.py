"""`extrusion replay` with and without the input checks: the same log, two source trees.

    git archive main | tar -x -C /tmp/extrusion-main
    .venv/bin/python benchmarks/replay_input.py --other /tmp/extrusion-main [--messages 60000]

Times the whole `extrusion replay LOG` command (process start, the input
check, the two-process replay, a throw-away store), interleaved, best of
`--repeat`, once with this tree's code and once with `--other`'s (put first
on PYTHONPATH, so its worker runs too), on one generated log as plain text
and as xz. Prints wall seconds and the ratio this/other; the other tree
reads no xz, so only the plain log is compared there.
"""

from __future__ import annotations

import argparse
import lzma
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extrusion_dev.generate import generate  # noqa: E402


def timed(src: Path, log: Path, config: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "extrusion.cli", "replay", "--config",
                           str(config), str(log)], env=env, capture_output=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{src}: replay failed: {proc.stderr.decode()[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, required=True, help="the source tree to compare")
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "mail.log"
        with open(log, "w", encoding="utf-8") as f:
            truth = generate(f, seed=11, messages=args.messages, senders=300, bots=2,
                             start=time.time() - 3 * 86400, duration=86400.0)
        packed = Path(tmp) / "mail.log.1"
        packed.write_bytes(lzma.compress(log.read_bytes(), preset=1))
        config = Path(tmp) / "extrusion.toml"
        config.write_text("")
        best: dict[str, float] = {}
        runs = [("this plain", REPO, log), ("other plain", args.other, log),
                ("this xz", REPO, packed)]
        for _ in range(args.repeat):
            for name, src, path in runs:
                took = timed(src, path, config)
                best[name] = min(best.get(name, took), took)
        mb = log.stat().st_size / 1e6
        print(f"{truth.lines:,} lines, {mb:.0f} MB plain, "
              f"{packed.stat().st_size / 1e6:.1f} MB xz; best of {args.repeat}")
        for name, took in best.items():
            print(f"  {name:12} {took:6.2f} s  {truth.lines / took:10,.0f} lines/s")
        print(f"  ratio this/other (plain): {best['this plain'] / best['other plain']:.3f}")
        print(f"  ratio xz/plain (this):    {best['this xz'] / best['this plain']:.3f}")


if __name__ == "__main__":
    main()
