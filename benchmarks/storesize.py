"""Store size per sender-day: how many bytes one ordinary sender's day costs.

    .venv/bin/python benchmarks/storesize.py [--senders 200] [--messages 20] [--no-pg]
    .venv/bin/python benchmarks/storesize.py --days 30 --senders 100 [--detail 7,3,1]
    .venv/bin/python benchmarks/storesize.py --days 30 --senders 30 --detail 7,1 --parts

Each sender sends `--messages` messages of 1-5 recipients spread over one
day; each recipient's outcome (90 % delivered, 10 % bounced) follows 1-20 s
later, and the engine flushes once per second of that day's clock, as the
daemons do (so a recipient's outcome often lands in a later flush than its
submission). Prints bytes per sender-day per table (data and indexes:
PostgreSQL's pg_total_relation_size after VACUUM FULL, SQLite's dbstat after
VACUUM).

With `--days N` the same traffic runs for N days, and the store is measured as it
stands on the last day: all detail kept, then folded as the policy daemon's prune
does with `[store] detail_days` of each `--detail` value in turn (messages before
the boundary folded into per-sender days, `sender_days`; minute counters before
`counter_boundary` deleted); bytes per active sender-day = the whole store /
(senders x days). With `--parts`, by table and index too, with the floors below
which no layout of these rows goes.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import os
import random
import tempfile
import time
from typing import Any

import sqlalchemy as sa
from pgtemp import pg_database

from extrusion.config import from_dict
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Outcome, Status, Submission
from extrusion.scoring.packing import recipients
from extrusion.scoring.retention import counter_boundary, detail_boundary
from extrusion.scoring.store import Store

T0 = 1_700_000_000.0
DAY = 86400.0
TABLES = ("names", "counters", "messages", "senders", "state_changes", "rate_use",
          "sender_days")


def events(senders: int, messages: int, seed: int = 7,
           days: int = 1) -> list[tuple[float, int, Any]]:
    """(time, order, event) of `days` days, in time order."""
    rnd = random.Random(seed)
    out: list[tuple[float, int, Any]] = []
    n = 0
    for s, d in ((s, d) for d in range(days) for s in range(senders)):
        key = f"sasl:customer{s:05d}@example.net"
        for m in range(messages):
            t = T0 + d * DAY + rnd.uniform(0, DAY - 60)
            qid = f"4B{d:02d}{s:05d}{m:03d}"
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


def run(url: str, day: list[tuple[float, int, Any]], spool: str) -> float:
    clock = [T0]
    cfg = from_dict({"general": {"hostname": "mx1.example.net"},
                     "store": {"url": url, "spool_dir": spool, "flush_batch": 10**9}})
    engine = Engine(cfg, Store(url), lambda: clock[0], own_store=True)
    next_flush = T0 + 1.0
    try:
        for t, _, ev in day:
            if t >= next_flush:  # the daemons flush about once a second (none if idle)
                clock[0] = next_flush
                engine.flush()
                next_flush = float(int(t) + 1)
            clock[0] = t
            if isinstance(ev, Submission):
                engine.submission(ev)
            else:
                engine.outcome(ev)
    finally:
        engine.close()
    return clock[0]


SETTLE_SECONDS = 120.0


def vacuum_full(conn: Any) -> None:
    """VACUUM FULL once no transaction on the server can still see the rows a prune
    deleted: VACUUM FULL keeps every row some snapshot may still see (an autovacuum's
    ANALYZE, another database's long transaction), and the size would be the
    unpruned one. Waits SETTLE_SECONDS at most, then says so."""
    mark = conn.execute(sa.text("SELECT (txid_current() % 4294967296)::text")).scalar()
    older = sa.text("SELECT count(*) FROM pg_stat_activity WHERE backend_xmin IS NOT NULL "
                    "AND pid <> pg_backend_pid() AND age(backend_xmin) >= age(CAST(:m AS xid))")
    deadline = time.monotonic() + SETTLE_SECONDS
    while conn.execute(older, {"m": mark}).scalar():
        if time.monotonic() > deadline:
            print("  (an older snapshot is still open: deleted rows may be counted)")
            break
        time.sleep(1.0)
    conn.execute(sa.text("VACUUM FULL ANALYZE"))


def sizes(url: str, tables: tuple[str, ...] = TABLES) -> dict[str, int]:
    eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            if eng.dialect.name == "postgresql":
                # FULL: the live rows only, what autovacuum lets a busy store reuse.
                vacuum_full(conn)
                return {t: int(conn.execute(sa.text(
                    f"SELECT pg_total_relation_size('{t}')")).scalar() or 0) for t in tables}
            rows = conn.execute(sa.text(
                "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m "
                "ON d.name = m.name GROUP BY m.tbl_name")).all()
            by = {str(name): int(size) for name, size in rows}
            return {t: by.get(t, 0) for t in tables}
    finally:
        eng.dispose()


def parts(url: str, floors: bool = True) -> dict[str, int]:
    """Bytes of each table (its data, PostgreSQL's TOAST too) and of each index, by name,
    and (`floors`) the floors of floor(), by name in parentheses."""
    eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            if eng.dialect.name == "postgresql":
                vacuum_full(conn)
                rows = conn.execute(sa.text(
                    "SELECT c.relname, CASE c.relkind WHEN 'i' THEN pg_relation_size(c.oid) "
                    "ELSE pg_table_size(c.oid) END FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                    "AND c.relkind IN ('r', 'i')")).all()
            else:
                rows = conn.execute(sa.text(
                    "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")).all()
            out = {str(name): int(size) for name, size in rows}
            return {**out, **(floor(conn, eng.dialect.name) if floors else {})}
    finally:
        eng.dispose()


FLOOR = "(row floor)"
INDEX_FLOOR = "(index floor)"
ADDRESSES = "(addresses)"
AGGREGATES = "(day sums)"


def floor(conn: Any, dialect: str) -> dict[str, int]:
    """What no layout of these rows goes below, built side by side: a table of as many
    rows as TABLES hold, each holding nothing (PostgreSQL: no column, its 24-byte
    header and 4-byte item pointer; SQLite: its rowid alone); an index of a 4-byte
    integer with as many entries as TABLES' indexes (primary keys too). Then the data
    itself, the physical floor of any layout that keeps the evidence: the recipients'
    addresses, and the folded days' sums (a 4-byte sender id, an 8-byte day, four
    4-byte counts, the hours)."""
    rows = {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() or 0)
            for t in TABLES}
    indexes = sa.inspect(conn)
    entries = sum(n * (len(indexes.get_indexes(t)) + 1) for t, n in rows.items())
    addresses = sum(len(r.recipient) for t, text in conn.execute(sa.text(
        "SELECT time, rcpts FROM messages")) for r in recipients(text, float(t)))
    sums = conn.execute(sa.text("SELECT count(*) * 32 FROM sender_days")).scalar()
    return {FLOOR: _floor_table(conn, dialect, sum(rows.values()), index=False),
            INDEX_FLOOR: _floor_table(conn, dialect, entries, index=True),
            ADDRESSES: addresses, AGGREGATES: int(sums or 0)}


def _floor_table(conn: Any, dialect: str, n: int, index: bool) -> int:
    """Bytes of `n` empty rows (index False) or of an index of `n` integers (True)."""
    conn.execute(sa.text("DROP TABLE IF EXISTS row_floor"))
    if dialect == "postgresql":
        conn.execute(sa.text("CREATE TABLE row_floor (k integer)" if index
                             else "CREATE TABLE row_floor ()"))
        conn.execute(sa.text(f"INSERT INTO row_floor SELECT {'i' if index else ''} "
                             f"FROM generate_series(1, {n}) i"))
        if index:
            conn.execute(sa.text("CREATE INDEX row_floor_k ON row_floor (k)"))
        size = conn.execute(sa.text(
            "SELECT pg_relation_size('row_floor_k')" if index
            else "SELECT pg_table_size('row_floor')")).scalar()
    else:
        conn.execute(sa.text("CREATE TABLE row_floor (k INTEGER)"))
        conn.execute(sa.text(
            f"WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < {n}) "
            f"INSERT INTO row_floor SELECT {'n' if index else 'NULL'} FROM i"))
        if index:
            conn.execute(sa.text("CREATE INDEX row_floor_k ON row_floor (k)"))
        size = conn.execute(sa.text(
            "SELECT SUM(pgsize) FROM dbstat WHERE name = "
            f"'{'row_floor_k' if index else 'row_floor'}'")).scalar()
    conn.execute(sa.text("DROP TABLE row_floor"))
    return int(size or 0)


def measure(backend: str, day: list[tuple[float, int, Any]], tmp: str) -> dict[str, int]:
    spool = os.path.join(tmp, f"spool-{backend}")
    if backend == "sqlite":
        url = f"sqlite:///{tmp}/{backend}.db"
        run(url, day, spool)
        with sa.create_engine(url).connect() as conn:
            conn.exec_driver_sql("VACUUM")
        return sizes(url)
    with pg_database() as url:
        run(url, day, spool)
        return sizes(url)


def month(backend: str, senders: int, messages: int, days: int, detail: list[float],
          tmp: str, by_part: bool = False) -> None:
    """Bytes per sender-day of `days` days, all detail kept and then folded."""
    traffic = events(senders, messages, days=days)
    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp}/month.db" if backend == "sqlite"
               else stack.enter_context(pg_database()))
        now = run(url, traffic, os.path.join(tmp, f"spool-month-{backend}"))
        columns = {"all": sizes(url)}
        split = {"all": parts(url)} if by_part else {}
        for days_kept in sorted(detail, reverse=True):
            with Store(url) as store:
                store.prune(0.0, detail_before=detail_boundary(now, days_kept),
                            counters_before=counter_boundary(now, days_kept))
            if backend == "sqlite":
                with sa.create_engine(url).connect() as conn:
                    conn.exec_driver_sql("VACUUM")
            columns[f"{days_kept:g} d"] = sizes(url)
            if by_part:
                split[f"{days_kept:g} d"] = parts(url)
    sender_days = senders * days
    if by_part:
        print(f"\n{backend}: bytes per sender-day over {days} days, by table and index")
        print(f"{'relation':30}" + "".join(f"{name:>10}" for name in split))
        extra = [FLOOR, INDEX_FLOOR, ADDRESSES, AGGREGATES]
        names = [*sorted({n for c in split.values() for n in c if c[n]} - set(extra)), *extra]
        for n in names:
            print(f"{n:30}" + "".join(f"{c.get(n, 0) / sender_days:10,.0f}"
                                      for c in split.values()))
    print(f"\n{backend}: bytes per sender-day over {days} days, by detail_days")
    print(f"{'table':14}" + "".join(f"{name:>10}" for name in columns))
    for t in TABLES:
        print(f"{t:14}" + "".join(f"{c[t] / sender_days:10,.0f}" for c in columns.values()))
    print(f"{'total':14}" + "".join(f"{sum(c.values()) / sender_days:10,.0f}"
                                    for c in columns.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--senders", type=int, default=200)
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--detail", default="7,3,1", help="detail_days values, with --days")
    ap.add_argument("--parts", action="store_true",
                    help="with --days, bytes by table and index and the row floor too")
    args = ap.parse_args()
    backends = ("sqlite", *(() if args.no_pg else ("postgresql",)))
    if args.days > 1:
        detail = [float(x) for x in args.detail.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            for backend in backends:
                month(backend, args.senders, args.messages, args.days, detail, tmp, args.parts)
        return
    day = events(args.senders, args.messages)
    rcpt_rows = sum(isinstance(e, Outcome) for _, _, e in day)
    print(f"{args.senders} senders x {args.messages} messages/day, {rcpt_rows} recipients")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            size = measure(backend, day, tmp)
            print(f"\n{backend}: bytes per sender-day")
            for t in TABLES:
                print(f"{t:14} {size[t] / args.senders:12,.0f}")
            print(f"{'total':14} {sum(size.values()) / args.senders:12,.0f}")


if __name__ == "__main__":
    main()
