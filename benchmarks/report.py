"""How fast a report over 100,000 messages loads and renders, side by side in one run.

    .venv/bin/python benchmarks/report.py [--messages 100000] [--store sqlite|postgresql|none]

A deterministic synthetic report (200 flagged senders x 500 messages, about
4.5 recipients each, 5,200 senders in the activity scatter) is rendered as
text, JSON and HTML; then the same data is written to a fresh store and
loaded back with every message listed. Each step is the best of --repeat
runs. Printed: seconds, output size, messages per second, and the ratios
HTML/text, JSON/text and store load/text render measured in this run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The samples live in the checkout's extrusion_dev, which is not installed.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extrusion.report.html import render_html  # noqa: E402
from extrusion.report.jsonfmt import render_json  # noqa: E402
from extrusion.report.load import Query, load_report  # noqa: E402
from extrusion.report.model import Report, ReportOutcome  # noqa: E402
from extrusion.report.text import render_text  # noqa: E402
from extrusion.scoring.events import StateChange  # noqa: E402
from extrusion.scoring.rows import Batch, SenderDelta  # noqa: E402
from extrusion.scoring.store import Store, state_change_row  # noqa: E402
from extrusion_dev import sample  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "EXTRUSION_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
HALF_LIFE = 3600.0
MESSAGES_PER_BATCH = 5000
DEFAULT_LISTING = 200  # report.max_messages_per_sender's default
STATUS = {ReportOutcome.DELIVERED: "sent", ReportOutcome.FAILED: "bounced",
          ReportOutcome.PENDING: "deferred"}


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def batches(report: Report) -> Iterator[Batch]:
    """The synthetic report as the engine would have written it, a few thousand messages a batch."""
    b, n = Batch(), 0
    for s in report.senders:
        for m in s.messages:
            b.messages.append({
                "time": m.time, "mta": "smarthost1", "queue_id": m.queue_id, "sender": s.key,
                "envelope_from": m.envelope_from, "helo": m.helo, "client_addr": "10.0.0.1",
                "size": m.size, "rcpt_count": len(m.recipients),
            })
            for i, r in enumerate(m.recipients):
                row = {"mta": "smarthost1", "queue_id": m.queue_id, "sender": s.key,
                       "recipient": r.address}
                b.recipients.append({**row, "time": m.time, "status": "queued"})
                b.recipients.append({**row, "time": m.time + 30 + i,
                                     "status": STATUS[r.delivery],
                                     "dsn": "5.1.1" if r.delivery is ReportOutcome.FAILED
                                     else "2.0.0"})
            n += 1
            if n % MESSAGES_PER_BATCH == 0:
                yield b
                b = Batch()
        kind = "helo_anomalies" if s.category.value == "virus" else "failed_recipients"
        b.add_sender(SenderDelta(s.key, time=s.last_seen, score_delta=s.score, state=s.state.value,
                                 first_seen=s.first_seen,
                                 findings={kind: {"count": s.counts.failed, "weight": s.score,
                                                  "examples": [], "first": s.first_seen,
                                                  "last": s.last_seen}}), HALF_LIFE)
        for ch in s.changes:
            b.state_changes.append(state_change_row(StateChange(
                ch.time, s.key, ch.old, ch.new, ch.score, ch.reason)))
    yield b


@contextmanager
def store_url(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    import sqlalchemy

    name = f"extrusion_bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def row(name: str, seconds: float, size: int | None, messages: int) -> str:
    mb = f"{size / 1e6:8.1f}" if size is not None else "       -"
    return f"  {name:<26} {seconds:8.2f} s {mb} MB {messages / seconds:12,.0f} msg/s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--store", choices=["sqlite", "postgresql", "none"], default="sqlite")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    report = sample.synthetic(messages=args.messages)
    msgs = sum(len(s.messages) for s in report.senders)
    rcpts = sum(len(m.recipients) for s in report.senders for m in s.messages)
    print(f"report: {len(report.senders)} flagged senders, {msgs:,} messages, {rcpts:,} "
          f"recipients, {len(report.activity):,} senders in the scatter")
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cores; best of {args.repeat}\n")

    t_text, text = best(lambda: render_text(report), args.repeat)
    t_json, js = best(lambda: render_json(report), args.repeat)
    t_html, page = best(lambda: render_html(report), args.repeat)
    print("render")
    print(row("text", t_text, len(text.encode()), msgs))
    print(row("json", t_json, len(js.encode()), msgs))
    print(row("html (14 plots)", t_html, len(page.encode()), msgs))

    t_load = None
    if args.store != "none":
        with tempfile.TemporaryDirectory(prefix="extrusion-bench-") as tmp, \
                store_url(args.store, Path(tmp)) as url:
            store = Store(url)
            try:
                start = time.perf_counter()
                for b in batches(report):
                    store.write_batch(b, HALF_LIFE)
                t_write = time.perf_counter() - start
                q = Query(until=report.until, since=report.since, max_messages=0,
                          half_life=HALF_LIFE)
                t_load, loaded = best(lambda: load_report(store, q), args.repeat)
                capped = Query(until=report.until, since=report.since,
                               max_messages=DEFAULT_LISTING, half_life=HALF_LIFE)
                t_capped, _ = best(lambda: load_report(store, capped), args.repeat)
            finally:
                store.close()
        loaded_msgs = sum(len(s.messages) for s in loaded.senders)
        assert loaded_msgs == msgs, (loaded_msgs, msgs)
        print(f"\nstore ({args.store})")
        print(row("write (setup)", t_write, None, msgs))
        print(row("load, all listed", t_load, None, msgs))
        print(row(f"load, {DEFAULT_LISTING}/sender listed", t_capped, None, msgs))
        print(row("load + text", t_load + t_text, None, msgs))

    print("\nratios (same run)")
    print(f"  html / text   {t_html / t_text:6.1f}x")
    print(f"  json / text   {t_json / t_text:6.1f}x")
    if t_load is not None:
        print(f"  load / text   {t_load / t_text:6.1f}x   (store load vs rendering it as text)")
        print(f"  load all / load default listing   {t_load / t_capped:6.1f}x")
    print(f"\n  median of renders: {statistics.median([t_text, t_json, t_html]):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
