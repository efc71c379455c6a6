"""Flow records: how fast they are ingested, and how soon sampled sFlow finds a direct sender.

    .venv/bin/python benchmarks/flows.py [--records 200000] [--seeds 5] [--hours 72]

Ingest: pmacct JSON lines (one-hour bins, 5,000 customer addresses sending to
random MX hosts) through `FlowFeed.line` (parse, range checks, per-source
analysis) with a sink that takes the findings, best of 3; beside it, the
floor of `json.loads` alone on the same lines, and the whole path with the
engine and a throw-away SQLite store (`extrusion flows replay`).

Detection: `extrusion.flows.simulate` sends a bot's port-25 sessions
(10 client packets each, to a pool of 50,000 MX hosts) around the clock,
sampled 1 in 500, 2,000 and 8,000, as pmacct writes them with one-hour bins,
through `flows replay` with the shipped conf/extrusion.toml thresholds and
own_networks 10.0.0.0/8; hours from its first message to its first
`throttled` and to `held` (median over the seeds; "never" within --hours).
Legitimate direct senders: 20 business mail servers in office hours
(08-18 UTC, 10 to 500 messages an hour, to many MX hosts) without an allow
entry, and 50 consumers posting to one fixed host a few times an hour: how
many reach `throttled` (any seed counts as once per sender and seed).
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

from extrusion import config as configmod
from extrusion.flows.feed import FlowFeed
from extrusion.flows.replay import replay
from extrusion.flows.simulate import Sender, mx_address, pmacct_records, sampled
from extrusion.scoring.events import FlowEvidence

T0 = 1_796_515_200.0  # a midnight UTC
RATES = (500, 2000, 8000)
BOT_VOLUMES = (100, 1000, 10000)


def base_config(tmp: str) -> configmod.Config:
    cfg = configmod.load(configmod.CHECKOUT_PATH)
    return dataclasses.replace(
        cfg, general=dataclasses.replace(cfg.general, own_networks=("10.0.0.0/8",)),
        store=dataclasses.replace(cfg.store, spool_dir=f"{tmp}/spool"))


class Sink:
    def __init__(self) -> None:
        self.n = 0

    def direct_sending(self, event: FlowEvidence) -> None:
        self.n += 1


def ingest_lines(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        src = f"10.{rng.randrange(20)}.{rng.randrange(250)}.{rng.randrange(1, 11)}"
        t = int(T0 + i * 86400 / n)
        out.append(json.dumps({
            "event_type": "purge", "ip_src": src, "ip_dst": mx_address(rng.randrange(50000)),
            "port_dst": 25, "ip_proto": "tcp", "sampling_rate": 2000,
            "stamp_inserted": str(t - t % 3600), "stamp_updated": str(t), "packets": 1,
            "bytes": 1500}))
    return out


def best_of(fn, rounds: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def ingest(cfg: configmod.Config, n: int, tmp: str) -> dict[str, float]:
    lines = ingest_lines(n)

    def feed_all() -> None:
        feed = FlowFeed(Sink(), cfg)
        for line in lines:
            feed.line(line)

    floor = best_of(lambda: [json.loads(line) for line in lines])
    feed_s = best_of(feed_all)
    path = Path(tmp) / "ingest.json"
    path.write_text("\n".join(lines) + "\n")
    t = time.perf_counter()
    result = replay(cfg, [str(path)])
    whole = time.perf_counter() - t
    return {"records": n, "json_loads_per_s": n / floor, "feed_per_s": n / feed_s,
            "replay_per_s": n / whole, "findings": result.stats.findings}


def hours_to(cfg: configmod.Config, senders: list[Sender], rate: int, hours: int, seed: int,
             tmp: str) -> dict[str, dict[str, float]]:
    """Per sender key: hours from T0 to its first throttled / held."""
    path = Path(tmp) / f"day-{rate}-{seed}.json"
    path.write_text("\n".join(pmacct_records(sampled(senders, rate, T0, hours, seed=seed),
                                             rate)) + "\n")
    result = replay(cfg, [str(path)])
    first: dict[str, dict[str, float]] = {}
    for c in result.changes:
        first.setdefault(c.sender, {}).setdefault(c.new.value, (c.time - T0) / 3600)
    return first


def detection(cfg: configmod.Config, seeds: int, hours: int, tmp: str) -> dict[str, object]:
    bots = [Sender(f"10.1.0.{i + 1}", per_hour=v) for i, v in enumerate(BOT_VOLUMES)]
    business = [Sender(f"10.2.0.{i + 1}", per_hour=round(10 * 50 ** (i / 19)),
                       hours=tuple(range(8, 18)), pool_seed=i + 1) for i in range(20)]
    occasional = [Sender(f"10.3.0.{i + 1}", per_hour=1 + i % 4, mx_pool=1, pool_seed=100 + i)
                  for i in range(50)]
    out: dict[str, object] = {}
    for rate in RATES:
        times: dict[int, dict[str, list[float]]] = {
            v: {"throttled": [], "held": []} for v in BOT_VOLUMES}
        legit = {"business": 0, "occasional": 0}
        for seed in range(1, seeds + 1):
            first = hours_to(cfg, bots + business + occasional, rate, hours, seed, tmp)
            for b in bots:
                got = first.get(f"ip:{b.addr}", {})
                for state in ("throttled", "held"):
                    t = got.get(state, got.get("held") if state == "throttled" else None)
                    times[b.per_hour][state].append(t if t is not None else float("inf"))
            legit["business"] += sum(1 for s in business if f"ip:{s.addr}" in first)
            legit["occasional"] += sum(1 for s in occasional if f"ip:{s.addr}" in first)
        out[str(rate)] = {
            "bots": {str(v): {k: statistics.median(ts) for k, ts in times[v].items()}
                     for v in BOT_VOLUMES},
            "business_flagged": f"{legit['business']}/{len(business) * seeds}",
            "occasional_flagged": f"{legit['occasional']}/{len(occasional) * seeds}",
        }
    return out


def fmt_hours(h: float) -> str:
    return "never" if h == float("inf") else f"{h:.1f} h"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--hours", type=int, default=72)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="extrusion-bench-flows-") as tmp:
        cfg = base_config(tmp)
        ing = ingest(cfg, args.records, tmp)
        det = detection(cfg, args.seeds, args.hours, tmp)
    if args.json:
        print(json.dumps({"ingest": ing, "detection": det}, indent=2, default=str))
        return 0
    print(f"ingest, {ing['records']:,.0f} records (best of 3):")
    print(f"  json.loads alone        {ing['json_loads_per_s']:>12,.0f} records/s")
    print(f"  FlowFeed.line           {ing['feed_per_s']:>12,.0f} records/s "
          f"({ing['json_loads_per_s'] / ing['feed_per_s']:.1f}x the floor's time)")
    print(f"  flows replay (engine)   {ing['replay_per_s']:>12,.0f} records/s, "
          f"{ing['findings']:.0f} findings")
    print(f"detection, median of {args.seeds} seeds over {args.hours} h:")
    print("  rate     bot/h   throttled   held     business flagged  occasional flagged")
    for rate, d in det.items():
        assert isinstance(d, dict)
        for v, t in d["bots"].items():
            print(f"  1:{rate:<6} {v:>6}   {fmt_hours(t['throttled']):>9}   "
                  f"{fmt_hours(t['held']):>7}  {d['business_flagged']:>16}  "
                  f"{d['occasional_flagged']:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
