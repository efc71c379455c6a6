"""What crash safety costs the live file feed: lines per second with and without it.

    .venv/bin/python benchmarks/crashsafe.py [--messages 30000] [--repeat 5]

One generated Postfix log (`extrusion_dev.generate`, seed 11) is followed
from its start, interleaved and best of `--repeat`, by:

- plain: `FileFollower` + `LogFeed`, checkpoint at the last line read (how the
  feed worked before: a crash lost what memory held);
- crash-safe: `CrashSafeFeed` (maillog/recovery.py): the joiner's marks, the
  hold-back computed at every checkpoint, events passed through `Recovery`;
- restart: a `CrashSafeFeed` started from the crash-safe run's checkpoint after
  every message was left open at the end (the worst case: a re-read with a
  store look-up per event read before).

Both engines discard events (an engine that does nothing), so the figure is
the feed's own cost; the store is an in-memory stand-in that answers "not
recorded", and checkpoints are kept in memory, after every poll of 4 MiB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sinks import CountingEngine  # noqa: E402

from extrusion.checkpoint import MemoryCheckpoints  # noqa: E402
from extrusion.config import from_dict  # noqa: E402
from extrusion.maillog.feed import LogFeed  # noqa: E402
from extrusion.maillog.follow import FileFollower  # noqa: E402
from extrusion.maillog.recovery import CrashSafeFeed  # noqa: E402
from extrusion_dev.generate import generate  # noqa: E402


class EmptyStore(MemoryCheckpoints):
    """Checkpoints in memory; every look-up answers "not recorded before"."""

    lookups = 0

    def message(self, queue_id: str, mta: str = "") -> Any:
        self.lookups += 1
        return None

    def outcomes_recorded(self, mta: str, queue_id: str) -> set[tuple[str, str, float]]:
        self.lookups += 1
        return set()


def _drain(poll: Any) -> float:
    """CPU seconds (of this process) to read to the end: the machine may be shared."""
    t = time.process_time()
    while poll():
        pass
    return time.process_time() - t


def plain(log: Path) -> tuple[float, int]:
    engine = CountingEngine()
    feed = LogFeed(engine)
    follower = FileFollower(log, feed.line, checkpoints=MemoryCheckpoints(),
                            start_at="beginning", commit=engine.flush)
    took = _drain(follower.poll)
    follower.close()
    return took, engine.events + engine.evidence_events


def crash_safe(log: Path, store: EmptyStore, tmp: Path) -> tuple[float, int]:
    engine = CountingEngine()
    cfg = from_dict({"general": {"hostname": "smtp1"},
                     "store": {"url": f"sqlite:///{tmp / 'unused.db'}",
                               "spool_dir": str(tmp / "spool")},
                     "maillog": {"source": "file", "path": str(log),
                                 "start_at": "beginning"}})
    feed = CrashSafeFeed(engine, cfg, store)
    took = _drain(feed.poll)
    feed.follower.close()  # no finish(): the open messages hold the checkpoint back
    return took, engine.events + engine.evidence_events


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log = tmp / "mail.log"
        with open(log, "w") as f:
            generate(f, seed=11, messages=args.messages, senders=300, bots=2)
        with open(log, "rb") as f:
            lines = sum(1 for _ in f)
        best: dict[str, float] = {}
        events: dict[str, int] = {}
        reread = 0
        for _ in range(args.repeat):
            took, n = plain(log)
            best["plain"] = min(best.get("plain", took), took)
            events["plain"] = n
            store = EmptyStore()
            took, n = crash_safe(log, store, tmp)
            best["crash-safe"] = min(best.get("crash-safe", took), took)
            events["crash-safe"] = n
            # Restart from that checkpoint with every line read before looked up.
            saved = next(iter(store.saved.values()))
            for name in store.saved:
                store.saved[name] = saved._replace(offset=0)
            took, n = crash_safe(log, store, tmp)
            best["restart, all re-read"] = min(best.get("restart, all re-read", took), took)
            events["restart, all re-read"] = n
            reread = store.lookups
    print(f"{lines:,} lines, {args.messages:,} messages; best of {args.repeat}")
    print("| run | CPU s | lines per CPU s | vs plain | events |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, s in best.items():
        print(f"| {name} | {s:.2f} | {lines / s:,.0f} | {best['plain'] / s:.2f}x "
              f"| {events[name]:,} |")
    print(f"store look-ups in the last restart: {reread:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
