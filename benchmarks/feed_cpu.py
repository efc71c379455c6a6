"""CPU per message of the policy daemon's log feed, as it runs there: two trees side by side.

    .venv/bin/python benchmarks/feed_cpu.py --base main --messages 20000 --repeat 3

The daemon's feed (extrusion.policyd.feed) wakes every `[maillog] poll_seconds`
and has `CrashSafeFeed.poll()` read what was appended: lines parsed and joined,
events into the engine, the engine's flush, the checkpoint saved. This does the
same without the reactor and without Postfix: a generated log is appended a
slice at a time (`--per-poll` messages' lines, about a second of `mta.py`'s
load) to a file that one `CrashSafeFeed` follows into an engine on a fresh
SQLite store, and the CPU time of the polls alone (`time.process_time`) is
divided by the messages. The policy server's share (three requests a message)
is `benchmarks/policyd.py`'s to measure; `mta.py` has the two together.

Each tree runs in a fresh process (`git archive` of `--base`, then this
checkout), interleaved, `--repeat` times; best of each is reported, and the
ratio. The machine is shared: only the ratio of one run means anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def child(log: Path, per_poll: int, messages: int) -> dict[str, float]:
    """In the tree on sys.path: follow `log` a slice at a time; CPU seconds of the polls."""
    from extrusion.config import from_dict
    from extrusion.maillog.recovery import CrashSafeFeed
    from extrusion.scoring.engine import Engine
    from extrusion.scoring.store import Store

    lines = log.read_bytes().splitlines(keepends=True)
    step = max(1, len(lines) * per_poll // messages)
    with tempfile.TemporaryDirectory() as tmp:
        followed = Path(tmp) / "mail.log"
        followed.write_bytes(b"")
        cfg = from_dict({"general": {"hostname": "bench"},
                         "store": {"url": f"sqlite:///{tmp}/x.db", "spool_dir": f"{tmp}/spool"},
                         "maillog": {"path": str(followed), "start_at": "beginning"}})
        store = Store(cfg.store.url)
        engine = Engine(cfg, store)
        feed = CrashSafeFeed(engine, cfg, store, path=str(followed))
        cpu = 0.0
        polls = 0
        with followed.open("ab") as out:
            for i in range(0, len(lines), step):
                out.write(b"".join(lines[i:i + step]))
                out.flush()
                t0 = time.process_time()
                feed.poll()
                engine.flush()  # the daemon's sync timer, once a poll
                cpu += time.process_time() - t0
                polls += 1
        feed.close()
        engine.close()
    return {"cpu_s": cpu, "polls": polls, "lines": len(lines)}


def generate_log(path: Path, messages: int) -> None:
    sys.path.insert(0, str(ROOT))
    from extrusion_dev.generate import generate

    with path.open("w") as f:
        generate(f, seed=17, messages=messages, senders=max(30, messages // 150), bots=2,
                 duration=messages / 300.0)


def run_tree(tree: Path, log: Path, per_poll: int, messages: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run(
        [sys.executable, str(HERE / "feed_cpu.py"), "--child", str(log),
         "--per-poll", str(per_poll), "--messages", str(messages)],
        env=env, cwd=tempfile.gettempdir(), check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--per-poll", type=int, default=300,
                    help="messages' lines appended between two polls")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.per_poll, args.messages)))
        return 0
    with tempfile.TemporaryDirectory(prefix="feed-cpu-") as tmp:
        work = Path(tmp)
        log = work / "mail.log"
        generate_log(log, args.messages)
        base = work / "base"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base, "extrusion"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        best: dict[str, float] = {}
        for rnd in range(args.repeat):
            for name, tree in (("base", base), ("this tree", ROOT)):
                r = run_tree(tree, log, args.per_poll, args.messages)
                ms = 1000 * r["cpu_s"] / args.messages
                best[name] = min(best.get(name, ms), ms)
                print(f"round {rnd + 1} {name:9s} {ms:.3f} ms CPU per message "
                      f"({r['polls']:.0f} polls, {r['lines']:.0f} lines)", flush=True)
        print(f"{args.messages} messages, {args.per_poll} a poll; best of {args.repeat}: "
              f"base ({args.base}) {best['base']:.3f} ms, this tree {best['this tree']:.3f} ms, "
              f"ratio {best['this tree'] / best['base']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
