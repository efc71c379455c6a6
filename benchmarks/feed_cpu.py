"""CPU per message of the policy daemon's log feed, as it runs there: two trees side by side.

    .venv/bin/python benchmarks/feed_cpu.py --base main --messages 20000 --repeat 3

The daemon's feed (extrusion.policyd.feed) wakes every `[maillog] poll_seconds`
and has `CrashSafeFeed.poll()` read what was appended: lines parsed and joined,
events into the engine, the engine's flush, the checkpoint saved. This does the
same without the reactor and without Postfix: a generated log is appended a
slice at a time (`--per-poll` messages' lines, about a second of `mta.py`'s
load) to a file that one `CrashSafeFeed` follows into an engine on a fresh
SQLite store, and the CPU time of the polls alone (`time.process_time`) over
the log's second half (the first fills the engine's memory, as a daemon's runs
with it full) is divided by the messages of that half. The policy server's
share (three requests a message) is `benchmarks/policyd.py`'s to measure;
`mta.py` has the two together.

Each tree runs in a fresh process (`git archive` of `--base`, then this
checkout), interleaved, `--repeat` times; best of each is reported, and the
ratio. The machine is shared: only the ratio of one run means anything.
`--gc` compares instead this tree with Python's default collector thresholds
and with replay's larger young generation (extrusion.replay.command) plus the
start-up heap frozen once the engine is open: what the daemon would gain.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trees import child_result, export

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def child(log: Path, per_poll: int, messages: int, daemon_gc: bool = False
          ) -> dict[str, float]:
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
        if daemon_gc:
            from extrusion.replay.command import GC_YOUNG_THRESHOLD

            young, *older = gc.get_threshold()
            gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
            gc.freeze()
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
                if i >= len(lines) // 2:
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


def run_tree(tree: Path, log: Path, per_poll: int, messages: int,
             daemon_gc: bool = False) -> dict[str, Any]:
    return child_result(tree, [str(HERE / "feed_cpu.py"), "--child", str(log),
                               "--per-poll", str(per_poll), "--messages", str(messages),
                               *(["--gc"] if daemon_gc else [])])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--per-poll", type=int, default=300,
                    help="messages' lines appended between two polls")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gc", action="store_true",
                    help="this tree with Python's default GC thresholds against replay's")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.per_poll, args.messages, args.gc)))
        return 0
    with tempfile.TemporaryDirectory(prefix="feed-cpu-") as tmp:
        work = Path(tmp)
        log = work / "mail.log"
        generate_log(log, args.messages)
        base = export(args.base, work / "base")
        best: dict[str, float] = {}
        trees = [("base", base, False), ("this tree", ROOT, False)]
        if args.gc:  # the same tree: "base" with Python's thresholds, then the daemon's
            trees = [("base", ROOT, False), ("this tree", ROOT, True)]
        for rnd in range(args.repeat):
            for name, tree, daemon_gc in trees:
                r = run_tree(tree, log, args.per_poll, args.messages, daemon_gc)
                ms = 1000 * r["cpu_s"] / (args.messages / 2)
                best[name] = min(best.get(name, ms), ms)
                print(f"round {rnd + 1} {name:9s} {ms:.3f} ms CPU per message "
                      f"({r['polls']:.0f} polls, {r['lines']:.0f} lines)", flush=True)
        what = "default GC" if args.gc else args.base
        print(f"{args.messages} messages, {args.per_poll} a poll; best of {args.repeat}: "
              f"base ({what}) {best['base']:.3f} ms, this tree {best['this tree']:.3f} ms, "
              f"ratio {best['this tree'] / best['base']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
