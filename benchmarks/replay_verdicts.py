"""Same verdicts before and after: every state change of `extrusion replay --json`, two trees.

    .venv/bin/python benchmarks/replay_verdicts.py [--base REV | --compiled DIR] [--log PATH]
                                                   [--messages 190000] [--days 2]

Replays one log with the checkout's code and with the code of `--base` (a git
revision, by default where this branch left main: `git merge-base HEAD main`),
each as `python -m extrusion.cli replay --json LOG` with a throw-away store, and
compares the JSON lines one by one: time, sender, state, score and reason of
every state change (and every misconfigured-sender notice). With `--compiled DIR` the
two sides are the checkout as it is (pure Python) and the checkout compiled with mypyc
in DIR (`scripts/compiled-tree DIR`, as `pip install .` builds it). Without `--log`
it generates a two-day smarthost log of about 1.6 M lines first
(`extrusion_dev.generate`, seed 17). Prints the counts, the first differences
the CPU seconds and peak RSS of each side; exits 1 if any change differs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.trees import compiled, export  # noqa: E402
from extrusion_dev.generate import generate  # noqa: E402


def replay(tree: Path, log: Path, config: Path) -> tuple[list[str], float, float]:
    """The state changes (JSON lines) of a replay by the code in `tree`, its CPU s and
    its peak RSS in MB (the largest of its processes)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # The replay starts its log reader as `python -m ...`: the same cwd and PYTHONPATH
    # make both processes import `tree`'s code, not the installed checkout.
    where = subprocess.run([sys.executable, "-c", "import extrusion; print(extrusion.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True, check=True)
    if not where.stdout.strip().startswith(str(tree)):
        raise SystemExit(f"{tree}: imports extrusion from {where.stdout.strip()}")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "extrusion.cli", "replay", "--config",
                                 str(config), "--json", str(log)],
                                cwd=tree, env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"replay in {tree} failed: {err.read()[-2000:].decode()}")
        return (out.read().decode().splitlines(), usage.ru_utime + usage.ru_stime,
                usage.ru_maxrss / 1024)


def compare(before: list[str], after: list[str]) -> int:
    """Print the first differences; the number of positions that differ."""
    differ = [i for i in range(max(len(before), len(after)))
              if (before[i] if i < len(before) else None)
              != (after[i] if i < len(after) else None)]
    for i in differ[:10]:
        print(f"  #{i}\n    before: {before[i] if i < len(before) else '(none)'}\n"
              f"    after:  {after[i] if i < len(after) else '(none)'}")
    return len(differ)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=None, help="git revision (default: merge-base with main)")
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--messages", type=int, default=190_000)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--compiled", type=Path, default=None, metavar="DIR",
                    help="compare the checkout with itself compiled in DIR instead")
    args = ap.parse_args()
    base = args.base or subprocess.run(
        ["git", "-C", str(REPO), "merge-base", "HEAD", "main"],
        capture_output=True, text=True, check=True).stdout.strip()
    new = compiled(args.compiled) if args.compiled else REPO
    if args.compiled:
        base = "the checkout, pure"
    with tempfile.TemporaryDirectory(prefix="bench-verdicts-") as tmp:
        log = args.log
        if log is None:
            log = Path(tmp) / "mail.log"
            with open(log, "w", encoding="utf-8") as f:
                generate(f, seed=17, messages=args.messages, senders=max(50, args.messages // 200),
                         bots=2, duration=args.days * 86400.0)
        with open(log, "rb") as f:
            lines = sum(1 for _ in f)
        config = Path(tmp) / "extrusion.toml"
        config.write_text('[general]\nlog_level = "warning"\n')
        old = REPO if args.compiled else export(base, Path(tmp) / "base")
        start = time.perf_counter()
        before, cpu_before, rss_before = replay(old, log, config)
        after, cpu_after, rss_after = replay(new, log, config)
    print(f"log: {lines:,} lines; {base[:18]} against {new} "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"state changes: {len(before):,} before, {len(after):,} after; "
          f"CPU s {cpu_before:.1f} before, {cpu_after:.1f} after; "
          f"peak RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after")
    differ = compare(before, after)
    print("identical" if not differ else f"{differ} state changes differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
