"""Store size per sender-day: how many bytes one ordinary sender's day costs.

    .venv/bin/python benchmarks/storesize.py [--senders 200] [--messages 20] [--no-pg]

Each sender sends `--messages` messages of 1-5 recipients spread over one
day; each recipient's outcome (90 % delivered, 10 % bounced) follows 1-20 s
later, and the engine flushes once per second of that day's clock, as the
daemons do (so a recipient's outcome often lands in a later flush than its
submission). Prints bytes per sender-day per table (data and indexes:
PostgreSQL's pg_total_relation_size after VACUUM FULL, SQLite's dbstat after
VACUUM), with the "queued" recipient rows kept as before (`keep queued`) and
replaced by their outcome (`elide queued`: left out when the outcome is in the
same flush, deleted when it comes in a later one), side by side.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import tempfile
from typing import Any

import sqlalchemy as sa
from pgtemp import pg_database

from extrusion.config import from_dict
from extrusion.scoring import batchwrite
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Outcome, Status, Submission
from extrusion.scoring.store import Store

T0 = 1_700_000_000.0
DAY = 86400.0
TABLES = ("recipients", "counters", "messages", "senders", "state_changes", "rate_use")


def events(senders: int, messages: int, seed: int = 7) -> list[tuple[float, int, Any]]:
    """(time, order, event) of one day, in time order."""
    rnd = random.Random(seed)
    out: list[tuple[float, int, Any]] = []
    n = 0
    for s in range(senders):
        key = f"sasl:customer{s:05d}@example.net"
        for m in range(messages):
            t = T0 + rnd.uniform(0, DAY - 60)
            qid = f"4B{s:05d}{m:03d}"
            rcpts = tuple(f"friend{rnd.randrange(10**6)}@example.org"
                          for _ in range(rnd.randint(1, 5)))
            out.append((t, n, Submission(
                time=t, sender=key, queue_id=qid, envelope_from=f"customer{s}@example.net",
                recipients=rcpts, size=rnd.randint(2_000, 60_000),
                client_addr=f"198.51.{s // 250}.{s % 250}", client_name="dsl.example.net",
                helos=("customer-pc.example.net",), message_id=f"<{qid}@example.net>")))
            n += 1
            for r in rcpts:
                at = t + rnd.uniform(1, 20)
                ok = rnd.random() < 0.9
                out.append((at, n, Outcome(
                    time=at, queue_id=qid, recipient=r,
                    status=Status.SENT if ok else Status.BOUNCED, dsn="2.0.0" if ok else "5.1.1",
                    reply=(f"250 2.0.0 Ok: queued as 4X{n:08d}" if ok
                           else f"550 5.1.1 <{r}>: Recipient address rejected: User unknown"),
                    relay="mx.example.org[192.0.2.25]:25")))
                n += 1
    heapq.heapify(out)
    return [heapq.heappop(out) for _ in range(len(out))]


def run(url: str, day: list[tuple[float, int, Any]], spool: str) -> None:
    clock = [T0]
    cfg = from_dict({"general": {"hostname": "mx1.example.net"},
                     "store": {"url": url, "spool_dir": spool, "flush_batch": 10**9}})
    engine = Engine(cfg, Store(url), lambda: clock[0], own_store=True)
    next_flush = T0 + 1.0
    try:
        for t, _, ev in day:
            while t >= next_flush:  # the daemons flush about once a second
                clock[0] = next_flush
                engine.flush()
                next_flush += 1.0
            clock[0] = t
            if isinstance(ev, Submission):
                engine.submission(ev)
            else:
                engine.outcome(ev)
    finally:
        engine.close()


def sizes(url: str) -> dict[str, int]:
    eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            if eng.dialect.name == "postgresql":
                # FULL: the live rows only, what autovacuum lets a busy store reuse.
                conn.execute(sa.text("VACUUM FULL ANALYZE"))
                return {t: int(conn.execute(sa.text(
                    f"SELECT pg_total_relation_size('{t}')")).scalar() or 0) for t in TABLES}
            rows = conn.execute(sa.text(
                "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m "
                "ON d.name = m.name GROUP BY m.tbl_name")).all()
            by = {str(name): int(size) for name, size in rows}
            return {t: by.get(t, 0) for t in TABLES}
    finally:
        eng.dispose()


def measure(backend: str, day: list[tuple[float, int, Any]], elide: bool,
            tmp: str) -> dict[str, int]:
    batchwrite.ELIDE_QUEUED = elide
    spool = os.path.join(tmp, f"spool-{backend}-{elide}")
    if backend == "sqlite":
        url = f"sqlite:///{tmp}/{backend}-{elide}.db"
        run(url, day, spool)
        with sa.create_engine(url).connect() as conn:
            conn.exec_driver_sql("VACUUM")
        return sizes(url)
    with pg_database() as url:
        run(url, day, spool)
        return sizes(url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--senders", type=int, default=200)
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    day = events(args.senders, args.messages)
    rcpt_rows = sum(isinstance(e, Outcome) for _, _, e in day)
    print(f"{args.senders} senders x {args.messages} messages/day, {rcpt_rows} recipients")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", *(() if args.no_pg else ("postgresql",))):
            kept = measure(backend, day, False, tmp)
            elided = measure(backend, day, True, tmp)
            print(f"\n{backend}: bytes per sender-day")
            print(f"{'table':14} {'keep queued':>12} {'elide queued':>13}")
            for t in TABLES:
                print(f"{t:14} {kept[t] / args.senders:12,.0f} {elided[t] / args.senders:13,.0f}")
            a, b = sum(kept.values()), sum(elided.values())
            print(f"{'total':14} {a / args.senders:12,.0f} {b / args.senders:13,.0f}"
                  f"   ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
