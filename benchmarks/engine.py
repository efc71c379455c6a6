"""Engine throughput: decisions per second in process, events per second into the store.

    .venv/bin/python benchmarks/engine.py [--decisions 200000] [--events 100000] [--no-pg]

Prints decisions/s with p50/p99 latency of one `decide()` (against a bare
locked dict lookup as the floor), and events/s (submissions and outcomes,
flushed in batches) into SQLite and PostgreSQL, with the ratio against
writing the same events one transaction per event, and into the kind of
throw-away SQLite store `extrusion replay` writes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from pgtemp import pg_database

from extrusion.config import Config, from_dict
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import (
    Outcome,
    Stage,
    Status,
    Submission,
)
from extrusion.scoring.store import Store

T0 = 1_700_000_000.0
SENDERS = 10_000
RUNS = 3


def config(url: str, spool: str) -> Config:
    return from_dict({"general": {"hostname": "bench"},
                      "store": {"url": url, "spool_dir": spool, "flush_batch": 10**9}})


def events(n: int, seed: int = 1) -> list[Submission | Outcome]:
    """About n events: each message is one submission and one outcome per recipient."""
    rng = random.Random(seed)
    out: list[Submission | Outcome] = []
    i = 0
    while len(out) < n:
        i += 1
        sender = f"ip:10.0.{(k := rng.randrange(SENDERS)) // 250}.{k % 250}"
        t = T0 + i * 0.01
        rcpts = tuple(f"u{rng.randrange(10**6)}@example{rng.randrange(50)}.com"
                      for _ in range(rng.choice((1, 1, 2, 3))))
        qid = f"{i:012X}"
        out.append(Submission(t, sender, qid, f"user{i}@example.net", rcpts, size=3000,
                              helos=("mail.example.net",), client_addr=sender[3:]))
        for r in rcpts:
            if rng.random() < 0.8:
                out.append(Outcome(t + 1, qid, r, Status.SENT, "2.0.0", "250 2.0.0 Ok",
                                   sender=sender))
            else:
                out.append(Outcome(t + 1, qid, r, Status.BOUNCED, "5.1.1",
                                   "550 5.1.1 <x>: Recipient address rejected: User unknown",
                                   sender=sender))
    return out


def feed(engine: Engine, evs: list[Submission | Outcome], batch: int) -> float:
    """Seconds to record and flush every event, flushing every `batch` events."""
    start = time.perf_counter()
    for k, ev in enumerate(evs, 1):
        if isinstance(ev, Submission):
            engine.submission(ev)
        else:
            engine.outcome(ev)
        if k % batch == 0:
            engine.flush()
    engine.flush()
    return time.perf_counter() - start


def bench_events(url: str, n: int, label: str) -> tuple[float, float]:
    """(events/s batched, events/s one transaction per event), best of RUNS."""
    evs = events(n)
    few = evs[: max(n // 50, 500)]
    best, single = 0.0, 0.0
    for run in range(RUNS):
        with tempfile.TemporaryDirectory() as spool:
            store = Store(url)
            engine = Engine(config(url, spool), store, lambda: T0)
            try:
                # A fresh seed per run: new queue ids, so nothing is deduplicated.
                run_evs = evs if run == 0 else _requeue(evs, run)
                best = max(best, len(run_evs) / feed(engine, run_evs, 5000))
                single = max(single, len(few) / feed(engine, _requeue(few, 100 + run), 1))
            finally:
                engine.close()
                store.close()
    print(f"  {label:10} batched (5000/flush): {best:10,.0f} events/s   "
          f"one commit per event: {single:8,.0f} events/s   ratio {best / single:5.1f}x")
    return best, single


def bench_throwaway(n: int) -> float:
    """events/s into a throw-away SQLite store as `extrusion replay` keeps it (no fsync,
    no WAL, indexes not built), flushed every 5,000 events; best of RUNS."""
    evs = events(n)
    best = 0.0
    for run in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/replay.db"
            store = Store(url, durable=False)
            engine = Engine(config(url, f"{tmp}/spool"), store, lambda: T0)
            try:
                with store.deferred_indexes(build=False):
                    best = max(best, len(evs) / feed(engine, _requeue(evs, 200 + run), 5000))
            finally:
                engine.close()
                store.close()
    print(f"  {'SQLite':10} throw-away (replay):  {best:10,.0f} events/s")
    return best


def _requeue(evs: list[Submission | Outcome], tag: int) -> list[Submission | Outcome]:
    from dataclasses import replace

    return [replace(e, queue_id=f"{tag}-{e.queue_id}") for e in evs]


def bench_decisions(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/x.db"
        store = Store(url)
        engine = Engine(config(url, f"{tmp}/spool"), store, lambda: T0)
        try:
            keys = [f"ip:10.0.{i // 250}.{i % 250}" for i in range(SENDERS)]
            feed(engine, events(20_000), 5000)  # some senders with history and scores
            rng = random.Random(2)
            order = [rng.choice(keys) for _ in range(n)]
            stages = [Stage.RCPT if i % 4 else Stage.EOM for i in range(n)]
            decide = engine.decide
            rates = []
            for _ in range(RUNS):
                start = time.perf_counter()
                for k, st in zip(order, stages, strict=True):
                    decide(k, st, 1, T0)
                rates.append(n / (time.perf_counter() - start))
            lock = threading.Lock()
            table = {k: k for k in keys}

            def floor(k: str) -> str | None:
                with lock:
                    return table.get(k)

            start = time.perf_counter()
            for k in order:
                floor(k)
            floor_rate = n / (time.perf_counter() - start)
            lat = _latencies(lambda k: decide(k, Stage.RCPT, 1, T0), order[: min(n, 100_000)])
        finally:
            engine.close()
            store.close()
    best = max(rates)
    print(f"  decide():             {best:10,.0f} decisions/s   "
          f"p50 {lat[0]:.2f} us   p99 {lat[1]:.2f} us   (senders known: {SENDERS:,})")
    print(f"  floor (locked dict):  {floor_rate:10,.0f} lookups/s     "
          f"ratio floor/decide {floor_rate / best:4.1f}x")


def _latencies(fn: Callable[[str], object], keys: list[str]) -> tuple[float, float]:
    clock = time.perf_counter_ns
    samples = []
    for k in keys:
        t = clock()
        fn(k)
        samples.append(clock() - t)
    q = statistics.quantiles(samples, n=100)
    return q[49] / 1000.0, q[98] / 1000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=200_000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    args = ap.parse_args()
    print(f"engine benchmark: best of {RUNS} runs, Python {sys.version.split()[0]}")
    print("decisions (in process, from memory):")
    bench_decisions(args.decisions)
    print(f"events (submission + outcomes, {args.events:,} per run):")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_rate, _ = bench_events(f"sqlite:///{tmp}/bench.db", args.events, "SQLite")
    throwaway_rate = bench_throwaway(args.events)
    print(f"  ratio throw-away/durable SQLite: {throwaway_rate / sqlite_rate:.2f}x")
    if not args.no_pg:
        with pg_database() as url:
            pg_rate, _ = bench_events(url, args.events, "PostgreSQL")
        print(f"  ratio SQLite/PostgreSQL: {sqlite_rate / pg_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
