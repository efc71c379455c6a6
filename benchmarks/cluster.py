"""Three smarthosts on one PostgreSQL: agreement, operator propagation, rows, latency.

    .venv/bin/python benchmarks/cluster.py [--rates 50,250] [--seconds 20] [--trials 15]

Starts three `extrusion policyd` (no milter) on one throw-away PostgreSQL
(benchmarks/pgtemp.py), each following its own Postfix log. At each rate
(messages per second over the cluster) --bots bots (a quarter of the messages, two
recipients each, one of them bouncing) and 200 customers (one delivered recipient
a message) send round-robin over the hosts: RCPT policy requests to the host, then,
if accepted, END-OF-MESSAGE and the host's log lines for the message and its
outcomes. Prints:

- agreement on throttle and hold: for each bot, from the first host answering
  DEFER (throttled; the benchmark's throttled budget is no message at all) or
  HOLD at MAIL to the last one doing so (a MAIL probe consumes no budget);
- operator propagation: `block` then `release` written to the store (as the CLI
  and the API do) for a customer, until every host answers REJECT, then DUNNO
  again (median and worst over --trials);
- rows: recipients the logs reported against the store's rows, per host: lost,
  duplicated, with another status;
- p50/p99 policy latency, and the store connections the three daemons held.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from hosts import HOSTS, daemon_config
from pgtemp import pg_database
from policyd import free_port, request, wait_engine, wait_port

from extrusion.config import from_dict
from extrusion.scoring.admin import operator_action
from extrusion.scoring.packing import recipients

BOT_USER = "bot"
CUSTOMERS = 200
PROBE_EVERY = 0.05  # seconds between two probes of every host
PROPAGATION_TIMEOUT = 30.0
# Customers and the bots before they are caught never meet a budget; a throttled bot
# may send no message, so a MAIL probe says DEFER as soon as a host throttles it.
LIMITS = """\
[limits.default]
messages_per_hour = 1000000
recipients_per_hour = 1000000
messages_per_day = 10000000
recipients_per_day = 10000000
[limits.throttled]
messages_per_hour = 1
"""


def stamp() -> str:
    return datetime.now(UTC).isoformat()


def log_message(log: Path, host: str, qid: str, user: str, outcomes: list[tuple[str, bool]]
                ) -> None:
    """The Postfix lines of one submitted message and its outcomes (sent or bounced)."""
    s = stamp()
    lines = [f"{s} {host} postfix/submission/smtpd[4100]: {qid}: client=pc.{user}.example"
             f"[198.51.100.7], sasl_method=PLAIN, sasl_username={user}",
             f"{s} {host} postfix/cleanup[4101]: {qid}: message-id=<{qid}@pc.example>",
             f"{s} {host} postfix/qmgr[1234]: {qid}: from=<{user}@customer.example>, "
             f"size=2000, nrcpt={len(outcomes)} (queue active)"]
    for rcpt, ok in outcomes:
        if ok:
            lines.append(f"{s} {host} postfix/smtp[4102]: {qid}: to=<{rcpt}>, relay=mx.remote"
                         ".example[198.51.100.25]:25, delay=0.4, delays=0.1/0/0.1/0.2, "
                         "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4XYZ)")
        else:
            lines.append(f"{s} {host} postfix/smtp[4102]: {qid}: to=<{rcpt}>, relay=mx.remote"
                         ".example[198.51.100.25]:25, delay=0.4, delays=0.1/0/0.1/0.2, "
                         "dsn=5.1.1, status=bounced (host mx.remote.example[198.51.100.25] "
                         f"said: 550 5.1.1 <{rcpt}>: User unknown (in reply to RCPT TO command))")
    lines.append(f"{s} {host} postfix/qmgr[1234]: {qid}: removed")
    with log.open("a") as f:
        f.write("\n".join(lines) + "\n")


class Host:
    def __init__(self, url: str, tmp: Path, name: str) -> None:
        self.name = name
        self.port, self.api_port = free_port(), free_port()
        self.conf = daemon_config(url, tmp, name, self.port, self.api_port, LIMITS)
        self.log = tmp / f"{name}.mail.log"
        self.log.touch()
        exe = Path(sys.executable).parent / "extrusion"
        self.proc = subprocess.Popen([str(exe), "policyd", "--config", str(self.conf)])
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def ready(self) -> None:
        wait_port(self.port, self.proc)
        wait_engine(self.api_port, self.proc)

    async def ask(self, state: str, user: str, rcpt: str, qid: str = "", count: int = 1
                  ) -> tuple[str, float]:
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.conn
        t0 = time.perf_counter()
        writer.write(request(state, user, "198.51.100.7", rcpt, count, qid))
        reply = await reader.readuntil(b"\n\n")
        return reply[7:].split(b" ", 1)[0].strip().decode(), time.perf_counter() - t0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class Firsts:
    """When each host first answered a bot's MAIL probe with DEFER (throttled: the
    benchmark's `[limits.throttled]` allows no message, and every host has counted some)
    and with HOLD, in seconds since the start."""

    def __init__(self, bots: int, hosts: int, prefix: str) -> None:
        self.users = [f"{prefix}bot{b}" for b in range(bots)]
        self.throttled: list[list[float | None]] = [[None] * hosts for _ in range(bots)]
        self.held: list[list[float | None]] = [[None] * hosts for _ in range(bots)]

    def pending(self) -> bool:
        return any(None in row for row in (*self.throttled, *self.held))

    async def probe(self, hosts: list[Host], since: float) -> None:
        now = time.monotonic() - since
        for user, thr, hld in zip(self.users, self.throttled, self.held, strict=True):
            for i, h in enumerate(hosts):
                if hld[i] is not None:
                    continue
                action = (await h.ask("MAIL", user, ""))[0]
                if action == "HOLD":
                    hld[i] = now
                    thr[i] = now if thr[i] is None else thr[i]
                elif action.startswith("DEFER") and thr[i] is None:
                    thr[i] = now

    @staticmethod
    def spreads(firsts: list[list[float | None]]) -> list[float]:
        return [max(t) - min(t) for t in ([x for x in f if x is not None] for f in firsts)
                if len(t) == len(firsts[0])]


async def drive(hosts: list[Host], rate: float, seconds: float, tag: str, firsts: Firsts
                ) -> tuple[list[float], dict[tuple[str, str, str], str]]:
    """Mail at `rate` messages/s round-robin, a quarter of it the bots'; returns the
    policy latencies and the outcomes logged."""
    lat: list[float] = []
    logged: dict[tuple[str, str, str], str] = {}
    bots = len(firsts.held)
    t0 = time.monotonic()
    n = 0
    next_probe = t0
    while time.monotonic() - t0 < seconds:
        due = t0 + n / rate
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        host = hosts[n % len(hosts)]
        qid = f"{tag}{n:08X}"
        bot = n % 4 == 0
        user = firsts.users[(n // 4) % bots] if bot else f"user{n % CUSTOMERS}"
        rcpts = [f"r{n}@remote.example"] + ([f"dead{n}@remote.example"] if bot else [])
        outcomes = []
        for r in rcpts:
            action, dt = await host.ask("RCPT", user, r)
            lat.append(dt)
            if action in ("DUNNO", "OK"):
                outcomes.append((r, not r.startswith("dead")))
        if outcomes:
            _action, dt = await host.ask("END-OF-MESSAGE", user, "", qid, len(outcomes))
            lat.append(dt)
            log_message(host.log, host.name, qid, user, outcomes)
            for r, ok in outcomes:
                logged[(host.name, qid, r)] = "sent" if ok else "bounced"
        n += 1
        if time.monotonic() >= next_probe and firsts.pending():
            next_probe = time.monotonic() + PROBE_EVERY
            await firsts.probe(hosts, t0)
    return lat, logged


async def propagation(url: str, hosts: list[Host], trials: int) -> list[float]:
    """Seconds from an operator's block (then release) in the store to every host's answer."""
    cfg = from_dict({"store": {"url": url}})
    out = []
    for i in range(trials):
        for verb, want in (("block", "REJECT"), ("release", "DUNNO")):
            user = f"op{i}"
            await asyncio.to_thread(operator_action, cfg, verb, f"sasl:{user}", "benchmark",
                                    "noc")
            t0 = time.monotonic()
            waiting = set(range(len(hosts)))
            while waiting and time.monotonic() - t0 < PROPAGATION_TIMEOUT:
                for j in list(waiting):
                    if (await hosts[j].ask("MAIL", user, ""))[0].startswith(want):
                        waiting.discard(j)
                await asyncio.sleep(0.02)
            out.append(time.monotonic() - t0 if not waiting else float("inf"))
    return out


def store_rows(url: str, tag: str) -> dict[tuple[str, str, str], list[str]]:
    """Each (mta, queue id, recipient) of the tagged messages with its stored status
    (the last outcome: a message's recipients are packed in its row)."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            rows = c.execute(sa.text(
                "SELECT n.name, m.queue_id, m.time, m.rcpts FROM messages m "
                "JOIN names n ON n.id = m.mta_id WHERE m.queue_id LIKE :t"), {"t": f"{tag}%"})
            out: dict[tuple[str, str, str], list[str]] = {}
            for mta, qid, t, rcpts in rows:
                for r in recipients(rcpts, float(t)):
                    out.setdefault((mta, qid, r.recipient), []).append(r.status)
            return out
    finally:
        eng.dispose()


def connections(url: str) -> int:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            name = url.rsplit("/", 1)[1]
            return int(c.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :d"), {"d": name}
            ).scalar_one()) - 1  # this query's own
    finally:
        eng.dispose()


def compare(logged: dict[tuple[str, str, str], str], stored: dict[tuple[str, str, str],
            list[str]]) -> tuple[int, int, int]:
    lost = sum(1 for k in logged if k not in stored)
    dup = sum(1 for k in logged if len(stored.get(k, [])) > 1)
    mismatched = sum(1 for k, v in logged.items() if k in stored and v not in stored[k])
    return lost, dup, mismatched


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] if s else float("nan")


def run(rates: list[float], seconds: float, trials: int, bots: int) -> None:
    with pg_database() as url, tempfile.TemporaryDirectory() as tmp:
        hosts = [Host(url, Path(tmp), h) for h in HOSTS]
        throttle: list[float] = []
        hold: list[float] = []
        try:
            for h in hosts:
                h.ready()
            print(f"three policyd hosts on one PostgreSQL, {seconds:.0f} s per rate, "
                  f"{bots} bots per rate")
            print(f"{'msg/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} {'dup':>4} "
                  f"{'mismatch':>8} {'logged':>7} {'caught':>6} {'conns':>5}")
            for k, rate in enumerate(rates):
                for h in hosts:
                    h.conn = None  # a new event loop: new connections
                firsts = Firsts(bots, len(hosts), f"r{k}")
                lat, logged = asyncio.run(drive(hosts, rate, seconds, f"{k}Q", firsts,
                                                 ))
                conns = connections(url)
                time.sleep(8.0)  # the feeds' polls and flushes
                lost, dup, mism = compare(logged, store_rows(url, f"{k}Q"))
                throttle += Firsts.spreads(firsts.throttled)
                hold += Firsts.spreads(firsts.held)
                caught = len(Firsts.spreads(firsts.held))
                print(f"{rate:>6.0f} {pct(lat, .5) * 1e3:>7.2f} {pct(lat, .99) * 1e3:>7.2f} "
                      f"{lost:>5} {dup:>4} {mism:>8} {len(logged):>7} {caught:>4}/{bots} "
                      f"{conns:>5}", flush=True)
            for name, spread in (("throttle", throttle), ("hold", hold)):
                if spread:
                    print(f"hosts agreeing on {name} ({len(spread)} bots): median "
                          f"{statistics.median(spread):.2f} s, worst {max(spread):.2f} s")

            async def props() -> list[float]:
                for h in hosts:
                    h.conn = None
                return await propagation(url, hosts, trials)

            times = asyncio.run(props())
            print(f"operator block/release reaching all 3 hosts ({len(times)} changes): "
                  f"median {statistics.median(times):.2f} s, worst {max(times):.2f} s")
        finally:
            for h in hosts:
                h.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rates", default="50,250")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--bots", type=int, default=5)
    a = ap.parse_args()
    run([float(r) for r in a.rates.split(",")], a.seconds, a.trials, a.bots)


if __name__ == "__main__":
    main()
