"""CPU time of recording and flushing events into SQLite, for comparing two trees.

    .venv/bin/python benchmarks/flush_cpu.py [events]
    PYTHONPATH=/path/to/other/tree .venv/bin/python /path/to/other/tree/benchmarks/flush_cpu.py

Records `events` (default 30,000) of `engine.py`'s mix into an engine on a
fresh SQLite store, flushing every 5,000, each flush followed by a `refresh()` (as
the daemon's maintenance does every few seconds: it reads back what this engine has
just written), and prints the best of 3 runs of this process's CPU time
(`time.process_time`): on a shared, loaded machine it moves far less than wall-clock
rates. Run two trees alternately, several times.
"""

from __future__ import annotations

import sys
import tempfile
import time

from engine import config, events

from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Submission
from extrusion.scoring.store import Store

FLUSH_EVERY = 5000
RUNS = 3


def once(evs: list[object]) -> tuple[float, float, float]:
    """CPU seconds recording, flushing and refreshing, over the whole run."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(f"sqlite:///{tmp}/x.db", f"{tmp}/spool")
        store = Store(cfg.store.url)
        eng = Engine(cfg, store)
        rec = flush = refresh = 0.0
        for i in range(0, len(evs), FLUSH_EVERY):
            t0 = time.process_time()
            for e in evs[i:i + FLUSH_EVERY]:
                if isinstance(e, Submission):
                    eng.submission(e)
                else:
                    eng.outcome(e)  # type: ignore[arg-type]
            t1 = time.process_time()
            eng.flush()
            t2 = time.process_time()
            eng.refresh()
            rec += t1 - t0
            flush += t2 - t1
            refresh += time.process_time() - t2
        eng.close()
        store.close()
    return rec, flush, refresh


def main() -> None:
    evs: list[object] = list(events(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000))
    runs = [once(evs) for _ in range(RUNS)]
    rec, flush, refresh = (min(r[i] for r in runs) for i in range(3))
    print(f"CPU: record {rec:.3f} s  flush {flush:.3f} s  refresh {refresh:.3f} s  "
          f"({len(evs)} events, best of {RUNS}; flush/record {flush / rec:.2f}x)")


if __name__ == "__main__":
    main()
