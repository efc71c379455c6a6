"""A store with 1 M senders against one with 10 k: daemon start-up, memory, latency, prune.

    .venv/bin/python benchmarks/scale.py [--senders 1000000] [--small 10000] [--no-pg]
                                         [--no-sqlite]

Fills a store (SQLite in a temp dir, and a throw-away PostgreSQL) with N senders
as a big ISP's store holds them after a month: 1 % active within the last hours
(a score worth remembering), 0.1 % throttled, the rest quiet; one message and
its recipient in its row, half of them older than the prune horizon. Then starts
`extrusion policyd` (no milter, no log feed) on it and prints, for 10 k and 1 M
senders side by side with the ratio:

- start-up: from the process start to /healthz answering 200 (the engine has read
  every sender row and kept the ones worth remembering, and the baselines);
- senders the engine kept in memory (`extrusion_engine_senders_in_memory`);
- resident memory after start-up and its peak (VmRSS, VmHWM);
- p50/p99 of a RCPT policy request for a random known sender (one connection);
- `Store.prune()` of the old half of the messages (before the
  daemon starts: its start-up prunes too);
- the engine alone, in this process: opening it on the store, and `decide()`s
  per second at RCPT for 100 k random known senders, the first time (most not in
  memory yet: their memory is made) and again; by the clock, and by this
  process's CPU time (what the load of other work on the machine changes least).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa
from pgtemp import pg_database
from policyd import free_port, request, wait_engine, wait_port

from extrusion.config import from_dict
from extrusion.scoring.engine import open_engine
from extrusion.scoring.events import Stage
from extrusion.scoring.rows import Batch
from extrusion.scoring.sqltext import PACKED_COLUMNS
from extrusion.scoring.store import Store

NOW = time.time()
OLD = NOW - 40 * 86400.0  # older than the prune horizon below
HORIZON = NOW - 30 * 86400.0
CHUNK = 20_000
REQUESTS = 3000
DECIDES = 100_000
STARTUP_TIMEOUT = 900.0  # a daemon on a big store may take minutes: measure, not fail


def sender_row(i: int) -> tuple[object, ...]:
    if i % 1000 == 0:
        state, score, t = "throttled", 25.0, NOW - 600.0
    elif i % 100 == 0:
        state, score, t = "ok", 5.0, NOW - 3600.0
    else:
        state, score, t = "ok", 0.0, OLD
    return (f"sasl:customer{i}", "default", state, score, t, OLD, t, t, "{}", 1, t)


def fill(url: str, n: int) -> None:
    """N senders, and one message each, its recipient in its row (the older half
    prunable)."""
    with Store(url) as s:
        s.upgrade()
    placeholders = {"sqlite": "?", "postgresql": "%s"}
    eng = sa.create_engine(url)
    p = placeholders[eng.dialect.name]
    senders = (f'INSERT INTO senders (key, class, state, score, score_time, first_seen, '
               f'last_seen, state_since, findings, version, changed_at) VALUES '
               f'({", ".join([p] * 11)})')
    messages = (f"INSERT INTO messages ({', '.join(PACKED_COLUMNS)}) VALUES "
                f"({', '.join([p] * len(PACKED_COLUMNS))})")
    try:
        with eng.begin() as conn:
            # Each name seen on its message's day, as the store marks it (names.py).
            conn.exec_driver_sql(f"INSERT INTO names (name, seen) VALUES ({p}, {p})", [
                *((name, int(NOW // 86400)) for name in ("mx1", "pc", "dsl.example.net")),
                *((f"sasl:customer{i}", int((OLD if i % 2 else NOW - 3600.0) // 86400))
                  for i in range(n))])
            name_ids = dict(conn.exec_driver_sql("SELECT name, id FROM names").all())
        mta, helo, client = (name_ids[x] for x in ("mx1", "pc", "dsl.example.net"))
        for start in range(0, n, CHUNK):
            ids = range(start, min(n, start + CHUNK))
            times = [OLD if i % 2 else NOW - 3600.0 for i in ids]
            with eng.begin() as conn:
                conn.exec_driver_sql(senders, [sender_row(i) for i in ids])
                conn.exec_driver_sql(messages, [  # its recipient delivered, in its row
                    (t, mta, name_ids[f"sasl:customer{i}"], 2000, helo, client, 1, 0, 1, 0,
                     f"Q{i:X}", f"c{i}@example.net", "198.51.100.7", "",
                     f"r{i}@example.org\ts\t2000")
                    for i, t in zip(ids, times, strict=True)])
    finally:
        eng.dispose()


def status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def in_memory(api_port: int) -> int:
    """The daemon's count of senders in memory; its metric is set every few seconds,
    so a fast start may show 0 at first (the store always holds some to keep)."""
    deadline = time.monotonic() + 30.0
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        m = re.search(r"^extrusion_engine_senders_in_memory (\S+)$", text, re.M)
        kept = int(float(m.group(1))) if m else -1
        if kept != 0 or time.monotonic() > deadline:
            return kept
        time.sleep(0.5)


async def latencies(port: int, n: int, senders: int) -> list[float]:
    rnd = random.Random(3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for k in range(n):
        user = f"customer{rnd.randrange(senders)}"
        t0 = time.perf_counter()
        writer.write(request("RCPT", user, "198.51.100.7", f"r{k}@remote.example", 0, ""))
        await reader.readuntil(b"\n\n")
        out.append(time.perf_counter() - t0)
    writer.close()
    await writer.wait_closed()
    return sorted(out)


def measure(url: str, tmp: Path, n: int) -> dict[str, float]:
    t0 = time.monotonic()
    fill(url, n)
    filled = time.monotonic() - t0
    print(f"# {n:,} senders written in {filled:.0f} s", file=sys.stderr, flush=True)
    with Store(url) as s:  # before the daemon, whose start-up prunes too
        t0 = time.monotonic()
        removed = s.prune(HORIZON)
        prune = time.monotonic() - t0
    port, api_port = free_port(), free_port()
    conf = tmp / f"scale-{n}.toml"
    conf.write_text(f"""\
[general]
log_level = "warning"
[store]
url = "{url}"
spool_dir = "{tmp}/spool-{n}"
[policyd]
listen = "tcp:{port}:interface=127.0.0.1"
hold_queued_mail = false
[api]
listen = "tcp:{api_port}:interface=127.0.0.1"
[milter]
enabled = false
[maillog]
source = "none"
""")
    exe = Path(sys.executable).parent / "extrusion"
    t0 = time.monotonic()
    proc = subprocess.Popen([str(exe), "policyd", "--config", str(conf)])
    try:
        wait_port(port, proc, STARTUP_TIMEOUT)
        wait_engine(api_port, proc, STARTUP_TIMEOUT)
        startup = time.monotonic() - t0
        rss, hwm = status_kb(proc.pid, "VmRSS"), status_kb(proc.pid, "VmHWM")
        kept = in_memory(api_port)
        lat = asyncio.run(latencies(port, REQUESTS, n))
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            # A 1 M PostgreSQL daemon may still be folding its start-up's backlog (see
            # benchmarks/README.md): its exit is not what this measures.
            print("# the daemon did not exit within 60 s of SIGTERM: killed", file=sys.stderr)
            proc.kill()
            proc.wait()
    load, (first, again), (first_cpu, again_cpu) = in_process(url, tmp, n)
    return {"fill s": filled, "start-up s": startup, "kept in memory": kept,
            "RSS MB": rss / 1024, "peak RSS MB": hwm / 1024,
            "p50 ms": lat[len(lat) // 2] * 1e3, "p99 ms": lat[int(len(lat) * .99)] * 1e3,
            "prune s": prune, "rows pruned": removed,
            "engine load s": load, "decide()/s new": first, "decide()/s again": again,
            "new, CPU": first_cpu, "again, CPU": again_cpu}


def in_process(url: str, tmp: Path, n: int
               ) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """The engine alone: opening it on the store, and `decide()` at RCPT for known
    senders (memory only, counted as a policy request counts)."""
    cfg = from_dict({"store": {"url": url, "spool_dir": f"{tmp}/spool-engine-{n}"}})
    t0 = time.perf_counter()
    engine = open_engine(cfg)
    load = time.perf_counter() - t0
    rnd = random.Random(5)
    keys = [f"sasl:customer{rnd.randrange(n)}" for _ in range(DECIDES)]
    rates, cpu = [], []
    try:
        for _ in range(2):  # first sight of most (a sender's memory made), then again
            t0, c0 = time.perf_counter(), time.process_time()
            for k in keys:
                engine.decide(k, Stage.RCPT, 1, now=NOW)
            rates.append(DECIDES / (time.perf_counter() - t0))
            cpu.append(DECIDES / (time.process_time() - c0))
        return load, (rates[0], rates[1]), (cpu[0], cpu[1])
    finally:
        engine._batch = Batch()  # nothing of the measurement goes into the store
        engine.close()


def show(backend: str, small: int, big: int, a: dict[str, float], b: dict[str, float]) -> None:
    print(f"\n{backend}: {small:,} senders against {big:,}")
    print(f"{'':>16} {small:>12,} {big:>12,} {'ratio':>8}")
    for k in a:
        ratio = b[k] / a[k] if a[k] else float("nan")
        print(f"{k:>16} {a[k]:>12.2f} {b[k]:>12.2f} {ratio:>8.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--senders", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if not args.no_sqlite:
            res = [measure(f"sqlite:///{t}/s{n}.db", t, n) for n in (args.small, args.senders)]
            show("SQLite", args.small, args.senders, *res)
        if not args.no_pg:
            pg = []
            for n in (args.small, args.senders):
                with pg_database() as url:
                    pg.append(measure(url, t, n))
            show("PostgreSQL", args.small, args.senders, *pg)


if __name__ == "__main__":
    main()
