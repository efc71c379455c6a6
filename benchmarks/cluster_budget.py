"""How far over its budget a throttled bot gets by spreading over three hosts.

    .venv/bin/python benchmarks/cluster_budget.py [--rates 1,5,20] [--refresh 3] [--flush 1]
        [--no-pg]

Three engines (three `[general] hostname`s) on one store, a throttled bot
(`[limits.throttled]`: 20 recipients an hour) asking round-robin at each rate
(recipients per second over all hosts) for ten minutes; every host flushes
every `--flush` seconds (`[policyd] flush_seconds`) and refreshes every
`--refresh` seconds (`[store] refresh_seconds`), as the daemons do. Prints
the recipients accepted with `[store] shared_limits` on and off, and the
bound the design gives: the budget plus what the other hosts can accept in
one flush interval.
"""

from __future__ import annotations

from hosts import BOT, HOSTS, T0, Sync, engines, shared_and_per_host, timing_args

from extrusion.scoring.events import Action, Stage
from extrusion.scoring.rows import SenderRow
from extrusion.scoring.store import Store

BUDGET = 20
SECONDS = 600


def accepted(url: str, tmp: str, rate: float, refresh: float, flush: float,
             shared: bool) -> int:
    with Store(url) as s:
        s.put_sender(SenderRow(key=BOT, state="throttled", score=30.0, score_time=T0,
                               first_seen=T0, last_seen=T0, state_since=T0))
    clock = [T0]
    hosts = engines(url, tmp, lambda: clock[0], {"shared_limits": shared},
                    scoring={"half_life_seconds": 86400.0 * 30})
    sync = Sync(hosts, flush, refresh)
    try:
        n, got = 0, 0
        while clock[0] < T0 + SECONDS:
            clock[0] = T0 + n / rate
            sync.until(clock[0])
            d = hosts[n % len(hosts)].decide(BOT, Stage.RCPT, 1, now=clock[0])
            got += d.action is Action.CONTINUE
            n += 1
        return got
    finally:
        for e in hosts:
            e.close()


def main() -> None:
    args = timing_args(__doc__.split("\n")[0])
    print(f"budget {BUDGET} recipients/hour, {len(HOSTS)} hosts, flush {args.flush:g} s, "
          f"refresh {args.refresh:g} s")
    print(f"{'backend':11} {'rcpt/s':>6} {'shared':>7} {'per host':>9} {'bound':>6} "
          f"{'overrun':>8}")
    for backend, rate, shared, per_host in shared_and_per_host(args, accepted):
        others = rate * args.flush * (len(HOSTS) - 1) / len(HOSTS)
        bound = BUDGET + int(others + 1)
        print(f"{backend:11} {rate:6g} {shared:7} {per_host:9} {bound:6} "
              f"{shared / BUDGET:7.2f}x")


if __name__ == "__main__":
    main()
