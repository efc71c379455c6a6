"""Flows at the MX: what the annotation by an address's MX mail changes, and nfdump's ingest.

    .venv/bin/python benchmarks/flows_mx.py [--seeds 5] [--hours 24] [--records 100000]

Detection: one engine in `[general] mode = "mx"` (shipped conf/extrusion.toml
otherwise, own_networks 10.0.0.0/8, a throw-away SQLite store). First an
hour of our MX's log (extrusion_dev.mxsession): 3 bots each send 3 spam
messages that the spam filter refuses, 20 consumers each 3 clean messages
that are delivered. Then `--hours` of their direct port-25 traffic sampled
1 in 2,000 and 1 in 8,000 (extrusion.flows.simulate, pmacct's hourly
records) through the flow feed with the engine's clock at each record: the
bots around the clock at 100, 1,000 and 10,000 messages an hour, the
consumers 20 to 300 messages an hour around the clock to many MX hosts (a
small office's own server or a mail program set to deliver directly, on no
allow list). Per setting, with `[flows] mx_annotation` off and on:
hours until a bot's first `direct_to_mx` finding and until it is `held`
(median over seeds, "never" within --hours), and how many consumer-seeds
got a `direct_to_mx` finding.

Ingest: the same records as pmacct JSON lines and as `nfdump -q -o csv`
lines through `FlowFeed.line`, best of 3, side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # extrusion_dev: the checkout's, not installed

from extrusion import config as configmod  # noqa: E402
from extrusion.flows.feed import FlowFeed  # noqa: E402
from extrusion.flows.simulate import Sender, mx_address, pmacct_records, sampled  # noqa: E402
from extrusion.maillog.feed import LogFeed  # noqa: E402
from extrusion.scoring.engine import Engine  # noqa: E402
from extrusion.scoring.events import FlowEvidence, StateChange  # noqa: E402
from extrusion.scoring.store import Store  # noqa: E402
from extrusion_dev.mxsession import Client, MxWriter, Transaction  # noqa: E402

T0 = 1_796_515_200.0  # a midnight UTC
RATES = (2000, 8000)
BOTS = (100, 1000, 10000)
CONSUMERS = 20


def config(tmp: str, annotate: bool) -> configmod.Config:
    cfg = configmod.load(configmod.CHECKOUT_PATH)
    return dataclasses.replace(
        cfg, general=dataclasses.replace(cfg.general, mode="mx", hostname="mx1",
                                         own_networks=("10.0.0.0/8",)),
        store=dataclasses.replace(cfg.store, url=f"sqlite:///{tmp}/extrusion.db",
                                  spool_dir=f"{tmp}/spool"),
        milter=dataclasses.replace(cfg.milter, enabled=False),
        flows=dataclasses.replace(cfg.flows, mx_annotation=annotate))


def mx_log(bots: list[Sender], consumers: list[Sender]) -> list[str]:
    mx = MxWriter(seed=3, host="mx1")
    t = T0 - 3600
    for s in bots + consumers:
        spam = s in bots
        c = Client(s.addr, "unknown", "DESKTOP-7F3K2Q" if spam else "laptop")
        for i in range(3):
            t = mx.session(t, c, [Transaction(f"a{i}@remote.example", [f"u{i}@isp.example"],
                                              spam=spam)])
            t += 20
    return [text for _t, _seq, text in sorted(mx.w.lines)]


class Clocked:
    """The engine with its clock set to each finding's time (as `flows replay` does)."""

    def __init__(self, engine: Engine, clock: list[float]) -> None:
        self.engine, self.clock = engine, clock
        self.store = engine.store
        self.sender_key = engine.sender_key
        self.first: dict[str, float] = {}

    def direct_sending(self, event: FlowEvidence) -> None:
        self.clock[0] = event.time
        self.first.setdefault(event.client_addr, (event.time - T0) / 3600)
        self.engine.direct_sending(event)


def run(tmp: str, annotate: bool, rate: int, hours: int, seed: int,
        bots: list[Sender], consumers: list[Sender]) -> dict[str, Any]:
    Path(tmp, "extrusion.db").unlink(missing_ok=True)
    cfg = config(tmp, annotate)
    clock = [T0 - 3600]
    engine = Engine(cfg, Store(cfg.store.url), lambda: clock[0], own_store=True)
    held: dict[str, float] = {}

    def changed(ch: StateChange) -> None:
        if ch.new.value in ("held", "blocked"):
            held.setdefault(ch.sender.removeprefix("ip:"), (ch.time - T0) / 3600)

    engine.add_listener(changed)
    try:
        log = LogFeed.from_config(engine, cfg, reference_time=T0)
        for line in mx_log(bots, consumers):
            log.line(line)
        log.finish()
        engine.flush()
        sink = Clocked(engine, clock)
        feed = FlowFeed(sink, cfg)
        for line in pmacct_records(sampled(bots + consumers, rate, T0, hours, seed=seed), rate):
            feed.line(line)
        engine.flush()
    finally:
        engine.close()
    # Held before the flows began (the MX evidence alone) counts as hour 0.
    return {"first": sink.first, "held": {a: max(t, 0.0) for a, t in held.items()}}


def detection(tmp: str, seeds: int, hours: int) -> dict[str, Any]:
    bots = [Sender(f"10.1.0.{i + 1}", per_hour=v) for i, v in enumerate(BOTS)]
    consumers = [Sender(f"10.3.0.{i + 1}", per_hour=round(20 * 15 ** (i / (CONSUMERS - 1))),
                        pool_seed=200 + i) for i in range(CONSUMERS)]
    out: dict[str, Any] = {}
    for rate in RATES:
        for annotate in (False, True):
            first: dict[int, list[float]] = {v: [] for v in BOTS}
            held: dict[int, list[float]] = {v: [] for v in BOTS}
            flagged = 0
            for seed in range(1, seeds + 1):
                r = run(tmp, annotate, rate, hours, seed, bots, consumers)
                for b in bots:
                    first[b.per_hour].append(r["first"].get(b.addr, float("inf")))
                    held[b.per_hour].append(r["held"].get(b.addr, float("inf")))
                flagged += sum(1 for c in consumers if c.addr in r["first"])
            out[f"1:{rate} annotation {'on' if annotate else 'off'}"] = {
                "bots": {v: (statistics.median(first[v]), statistics.median(held[v]))
                         for v in BOTS},
                "consumers_flagged": f"{flagged}/{CONSUMERS * seeds}"}
    return out


def csv_line(rec: dict[str, Any]) -> str:
    end = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rec["stamp_updated"]))
    return (f"{end},{end},0.000,{rec['ip_src']},{rec['ip_dst']},40000,25,TCP,...AP.SF,0,0,"
            f"{rec['packets']},{rec['bytes']},0,0,1,2,0,0,0,0,0,0,0.0.0.0,0.0.0.0,0,0,"
            "00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,"
            "0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,    0.000,"
            f"    0.000,    0.000,127.0.0.1,0/0,1,{end}.000")


def ingest(n: int) -> dict[str, float]:
    rng = random.Random(1)
    recs = []
    for i in range(n):
        t = int(T0 + i * 86400 / n)
        src = f"10.{rng.randrange(20)}.{rng.randrange(250)}.{rng.randrange(1, 11)}"
        recs.append({"ip_src": src,
                     "ip_dst": mx_address(rng.randrange(50000)), "port_dst": 25,
                     "ip_proto": "tcp", "sampling_rate": 2000, "stamp_inserted": t - t % 3600,
                     "stamp_updated": t, "packets": 1, "bytes": 1500})
    cfg = configmod.load(configmod.CHECKOUT_PATH)
    cfg = dataclasses.replace(cfg, general=dataclasses.replace(
        cfg.general, own_networks=("10.0.0.0/8",)))
    out = {}
    for name, lines in (("pmacct_json", [json.dumps(r) for r in recs]),
                        ("nfdump_csv", [csv_line(r) for r in recs])):
        best = float("inf")
        for _ in range(3):
            feed = FlowFeed(Sink(), cfg)
            t0 = time.perf_counter()
            for line in lines:
                feed.line(line)
            best = min(best, time.perf_counter() - t0)
            assert feed.stats.parsed == n and feed.stats.bad == 0, feed.stats
        out[name] = n / best
    return out


class Sink:
    def direct_sending(self, event: FlowEvidence) -> None:
        pass


def hours(h: float) -> str:
    return "never" if h == float("inf") else f"{h:.1f} h"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--records", type=int, default=100_000)
    args = ap.parse_args()
    ing = ingest(args.records)
    print(f"ingest, {args.records:,} records through FlowFeed.line (best of 3):")
    print(f"  pmacct JSON lines   {ing['pmacct_json']:>10,.0f} records/s")
    print(f"  nfdump CSV lines    {ing['nfdump_csv']:>10,.0f} records/s "
          f"({ing['pmacct_json'] / ing['nfdump_csv']:.2f}x the JSON lines' time)")
    with tempfile.TemporaryDirectory(prefix="extrusion-bench-flows-mx-") as tmp:
        det = detection(tmp, args.seeds, args.hours)
    print(f"detection in mx mode, median of {args.seeds} seeds over {args.hours} h "
          "(first direct_to_mx finding · held):")
    print("  setting                   " + "".join(f"bot {v:>6}/h        " for v in BOTS)
          + "consumers flagged")
    for name, d in det.items():
        cells = "".join(f"{hours(f):>7} · {hours(h):<9} " for f, h in d["bots"].values())
        print(f"  {name:<25} {cells} {d['consumers_flagged']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
