"""How many failures a bot spread over three hosts gets before the failure trigger fires.

    .venv/bin/python benchmarks/cluster_failures.py [--rates 1,5,20] [--refresh 3]
        [--flush 1] [--no-pg]

Three engines (three `[general] hostname`s) on one store; a bot sends
three-recipient messages round-robin, one recipient of each bouncing (a third:
below `[scoring] failure_share`, above a list's share, so only the floor
`failure_trigger` = 20 can fire; the failure weight is small so the summed score
alone throttles no one), at each rate (failures per second over all hosts);
every host flushes every `--flush` s and refreshes every `--refresh` s, as the
daemons do. Prints the failures sent when the first host throttled the bot, with
`[store] shared_failures` on and off, and the bound the design gives: more than
the trigger, plus what the hosts see in one flush interval.
"""

from __future__ import annotations

from hosts import BOT, HOSTS, T0, Sync, engines, shared_and_per_host, timing_args

from extrusion.scoring.events import Outcome, State, Status, Submission

TRIGGER = 20  # [scoring] failure_trigger: more than this many
MAX_FAILURES = 200


def failures_to_trigger(url: str, tmp: str, rate: float, refresh: float, flush: float,
                        shared: bool) -> int | None:
    clock = [T0]
    hosts = engines(url, tmp, lambda: clock[0], {"shared_failures": shared},
                    weights={"failed_recipient": 0.1})
    sync = Sync(hosts, flush, refresh)
    try:
        for n in range(MAX_FAILURES):
            clock[0] = T0 + n / rate
            sync.until(clock[0])
            e = hosts[n % len(hosts)]
            qid = f"4F{n:05d}"
            dead, *alive = (f"dead{n}@example.org", f"a{n}@example.org", f"b{n}@example.org")
            e.submission(Submission(time=clock[0], sender=BOT, queue_id=qid,
                                    envelope_from="bot@x.example", recipients=(dead, *alive),
                                    client_addr="192.0.2.66"))
            for r in alive:
                e.outcome(Outcome(time=clock[0], queue_id=qid, recipient=r, status=Status.SENT,
                                  dsn="2.0.0", reply="250 2.0.0 Ok"))
            e.outcome(Outcome(time=clock[0], queue_id=qid, recipient=dead,
                              status=Status.BOUNCED, dsn="5.1.1",
                              reply=f"550 5.1.1 <{dead}>: user unknown"))
            mem = e._senders.get(BOT)
            if mem is not None and mem.state is State.THROTTLED:
                return n + 1
        return None
    finally:
        for h in hosts:
            h.close()


def main() -> None:
    args = timing_args(__doc__.split("\n")[0])
    print(f"trigger: more than {TRIGGER} failures, {len(HOSTS)} hosts, flush {args.flush:g} s, "
          f"refresh {args.refresh:g} s")
    print(f"{'backend':11} {'fail/s':>6} {'shared':>7} {'per host':>9} {'bound':>6}")
    for backend, rate, shared, per_host in shared_and_per_host(args, failures_to_trigger):
        bound = TRIGGER + 1 + int(rate * args.flush + 1)
        shown = [str(r) if r is not None else f">{MAX_FAILURES}" for r in (shared, per_host)]
        print(f"{backend:11} {rate:6g} {shown[0]:>7} {shown[1]:>9} {bound:6}",
              flush=True)


if __name__ == "__main__":
    main()
