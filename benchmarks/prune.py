"""Pruning and folding a million rows: one statement against batches, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/prune.py [--senders 500000] [--no-pg] [--no-sqlite]
        [--no-rescan] [--jobs expire,fold] [--repeat 1]

Issue 20. Fills a store once per backend with N senders, each with one message (its
recipient delivered, packed in its row) and one minute counter, half of the senders'
rows 40 days old and interleaved with the new half in every table's key order (as
a month of mixed senders is). Then, each on a fresh copy of the same store:

- expire: `Store.prune(horizon)` deletes the old half (N rows);
- fold: `Store.prune(0, detail_before=horizon)` folds the old half into
  `sender_days` and deletes its counters (N rows taken);

each as one statement a step (`batch=None`), in keyset batches of 5,000 and in
the backend's own batches (what the daemon runs: 5,000 rows on SQLite; on
PostgreSQL 50,000 for expiry, 5,000 for folds), each batch starting after the
previous one's last key (on SQLite a pause as long as the batch took between
two, counted apart), and, unless
--no-rescan, in batches that each start again from the lowest key (the way before
this change). Every variant must leave the same rows and sums (checked).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from extrusion.scoring import retention, schema
from extrusion.scoring.dialects import write_path
from extrusion.scoring.sqltext import PACKED_COLUMNS
from extrusion.scoring.store import Store

NOW = 1_790_000_000.0
OLD = NOW - 40 * 86400.0
HORIZON = NOW - 30 * 86400.0
CHUNK = 20_000
# `Store.prune`'s batch by variant: None one statement, 0 the backend's own size.
BATCHES: dict[str, int | None] = {"one statement": None,
                                  f"batches of {retention.BATCH:,}": retention.BATCH,
                                  "the backend's batches": retention.BACKEND}
PG_ADMIN = os.environ.get("EXTRUSION_TEST_PG",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def fill(url: str, n: int) -> None:
    """N senders' rows; odd senders' are old. Raw executemany: the fill is not measured."""
    with Store(url) as s:
        s.upgrade()
    eng = sa.create_engine(url)
    p = "?" if eng.dialect.name == "sqlite" else "%s"

    def insert(table: str, cols: tuple[str, ...]) -> str:
        return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([p] * len(cols))})"

    messages = insert("messages", PACKED_COLUMNS)
    counters = insert("counters", ("sender_id", "name", "bucket", "value"))
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql(insert("names", ("name",)), [
                (name,) for name in ("mx1", "pc", "dsl.example.net",
                                     *(f"sasl:customer{i}" for i in range(n)))])
            ids = dict(conn.exec_driver_sql("SELECT name, id FROM names").all())
        for start in range(0, n, CHUNK):
            rows = [(i, OLD if i % 2 else NOW - 3600.0, ids[f"sasl:customer{i}"])
                    for i in range(start, min(n, start + CHUNK))]
            with eng.begin() as conn:
                conn.exec_driver_sql(messages, [
                    (t, ids["mx1"], k, 2000, ids["pc"], ids["dsl.example.net"], 1, 0, 1, 0,
                     f"Q{i:X}", f"c{i}@example.net",
                     "198.51.100.7", "", f"r{i}@example.org\ts\t2000")
                    for i, t, k in rows])
                conn.exec_driver_sql(counters, [(k, "messages", int(t // 60) * 60, 1.0)
                                                for i, t, k in rows])
        if eng.dialect.name == "postgresql":
            with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")  # as autovacuum would have by then
    finally:
        eng.dispose()


def outcome(url: str) -> tuple[int, ...]:
    """Rows left per table and the folded sums: every variant must end the same."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            counts = [int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                      for t in (schema.messages, schema.counters, schema.sender_days)]
            d, c = schema.sender_days, schema.counters
            sums = [conn.execute(sa.select(sa.func.coalesce(sa.func.sum(col), 0))).scalar_one()
                    for col in (d.c.messages, d.c.delivered, c.c.value)]
    finally:
        eng.dispose()
    return (*counts, *(int(v) for v in sums))


def rescan(url: str, before: float, detail_before: float | None) -> int:
    """The batches as before: each from the lowest key again (and SQLite's pause)."""
    removed = 0
    with Store(url) as s:
        eng = sa.create_engine(url)
        if s.dialect == "sqlite":  # the store's own setting (database.py), not FULL
            sa.event.listen(eng, "connect", lambda c, _: c.execute("PRAGMA synchronous = NORMAL"))
        try:
            plan = retention.Prune.plan(write_path(s.dialect), before, detail_before,
                                        retention.BATCH)
            for walk in plan.walks:
                while True:
                    started = time.monotonic()
                    with eng.begin() as conn:
                        n, last = walk.step(conn, None)
                    removed += n
                    if last is None:
                        break
                    if s.dialect == "sqlite":
                        time.sleep(min(max(time.monotonic() - started, 0.002), 0.1))
        finally:
            eng.dispose()
    return removed


class Pauses:
    """Seconds the batched prune slept between batches (SQLite's turn for other writers)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._sleep = time.sleep

    def __enter__(self) -> Pauses:
        def sleep(s: float) -> None:
            self.total += s
            self._sleep(s)
        time.sleep = sleep
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep = self._sleep


def run(url: str, job: str, variant: str) -> tuple[float, float, int]:
    before, detail = (HORIZON, None) if job == "expire" else (0.0, HORIZON)
    with Pauses() as pauses:
        t0 = time.perf_counter()
        if variant == "rescan":
            removed = rescan(url, before, detail)
        else:
            with Store(url) as s:
                removed = s.prune(before, detail_before=detail, batch=BATCHES[variant])
        return time.perf_counter() - t0, pauses.total, removed


@contextmanager
def pg_admin() -> Iterator[Callable[[str], None]]:
    eng = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            yield lambda sql: conn.exec_driver_sql(sql) and None
    finally:
        eng.dispose()


@contextmanager
def copies(backend: str, tmp: Path, n: int) -> Iterator[Callable[[str], str]]:
    """Fill one store, then hand out fresh copies of it by name."""
    if backend == "sqlite":
        src = tmp / "src.db"
        fill(f"sqlite:///{src}", n)

        def copy_sqlite(name: str) -> str:
            dst = tmp / f"{name}.db"
            shutil.copy(src, dst)
            return f"sqlite:///{dst}"
        yield copy_sqlite
        return
    # EXTRUSION_PG_PREFIX (as the tests') names the databases of one's own runs.
    base = f"{os.environ.get('EXTRUSION_PG_PREFIX', '')}prune_bench_{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    with pg_admin() as sql:
        sql(f'CREATE DATABASE "{base}"')
        made.append(base)
        try:
            fill(PG_ADMIN.rsplit("/", 1)[0] + f"/{base}", n)

            def copy_pg(name: str) -> str:
                db = f"{base}_{name}"
                sql(f'CREATE DATABASE "{db}" TEMPLATE "{base}"')
                made.append(db)
                sql("CHECKPOINT")  # the copy's writes, flushed before the measurement
                return PG_ADMIN.rsplit("/", 1)[0] + f"/{db}"
            yield copy_pg
        finally:
            for db in made:
                sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def measure(backend: str, tmp: Path, n: int, variants: list[str], jobs: list[str]) -> None:
    t0 = time.monotonic()
    with copies(backend, tmp, n) as copy:
        print(f"# {backend}: {n:,} senders, {2 * n:,} rows written (and {n:,} names) in "
              f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        for job in jobs:
            first, ends = 0.0, set()
            for k, variant in enumerate(variants):
                url = copy(f"{job}{k}")
                took, paused, removed = run(url, job, variant)
                ends.add(outcome(url))
                # Each round's ratios are to its own one statement (--repeat).
                first = took if variant == "one statement" or not first else first
                print(f"| {backend} | {job} | {variant} | {removed:,} | {took:.2f} | "
                      f"{paused:.2f} | {took / first:.2f} | {(took - paused) / first:.2f} |",
                      flush=True)
            assert len(ends) == 1, f"the variants ended differently: {ends}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--senders", type=int, default=500_000)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-rescan", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--jobs", default="expire,fold", help="expire, fold or both")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the variants")
    args = ap.parse_args()
    variants = ([*BATCHES] + ([] if args.no_rescan else ["rescan"])) * args.repeat
    jobs = args.jobs.split(",")
    print("| backend | job | variant | rows | s | of which paused | ratio | ratio unpaused |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="prune-bench-") as tmp:
        if not args.no_sqlite:
            measure("sqlite", Path(tmp), args.senders, variants, jobs)
        if not args.no_pg:
            measure("postgresql", Path(tmp), args.senders, variants, jobs)


if __name__ == "__main__":
    main()
