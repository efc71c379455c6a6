"""Cost of the pure judgements the engine calls per event: classify, HELO, heuristics.

The engine's targets (issue 3) leave about 50 us per event at 20,000
events/s. This prints microseconds per call for each judgement on a mix of
real provider replies and HELOs, and side by side in the same run:

- classify() against one plain `re.search` over the same reply (the floor
  any text-reading classifier pays), as a ratio;
- helo_anomalies() with warm caches (a customer saying the same HELO
  again) against cold (a worm inventing a new HELO every session), as a
  ratio, since the cold case is what an outbreak costs.

    .venv/bin/python benchmarks/judgements.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable

from extrusion.scoring.classify import classify
from extrusion.scoring.events import Headers, Status
from extrusion.scoring.helo import helo_anomalies
from extrusion.scoring.heuristics import is_auto_reply, list_identity

REPLIES = [
    (Status.BOUNCED, "5.1.1", "host gmail-smtp-in.l.google.com[142.250.1.26] said: 550-5.1.1 The "
     "email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking"
     " the recipient's email address for typos or\n550 5.1.1 unnecessary spaces. - gsmtp"),
    (Status.BOUNCED, "5.7.1", "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked "
     "using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.25"),
    (Status.BOUNCED, "5.0.0", "554 delivery error: dd This user doesn't have a yahoo.com account "
     "(x@yahoo.com) [0] - mta1234.mail.gq1.yahoo.com"),
    (Status.BOUNCED, "5.4.4", "Host or domain name not found. Name service error for "
     "name=fdf.sdfads type=A: Host not found"),
    (Status.BOUNCED, "5.0.0", "550 Protocol violation"),  # no rule: the whole table is tried
    (Status.SENT, "2.0.0", "250 2.0.0 OK 1716812345 - gsmtp"),
]
BASELINE = re.compile(r"user unknown", re.IGNORECASE)


REPEATS = 5  # best of: the machines are shared, the minimum is the least disturbed run


def per_call_us(fn: Callable[[int], object], rounds: int) -> float:
    best = float("inf")
    for repeat in range(REPEATS):
        offset = repeat * rounds  # fresh names each repeat, so "cold" stays cold
        start = time.perf_counter()
        for i in range(offset, offset + rounds):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    rounds = parser.parse_args().rounds

    def run_classify(i: int) -> object:
        status, dsn, reply = REPLIES[i % len(REPLIES)]
        return classify(status, dsn, reply)

    def run_baseline(i: int) -> object:
        return BASELINE.search(REPLIES[i % len(REPLIES)][2])

    def run_helo_warm(i: int) -> object:
        return helo_anomalies(
            ["mail.customer.example"], "198.51.100.5", "host-5.dsl.isp.example",
            "bob@customer.example", ["alice@gmail.com", "jo@yahoo.co.uk"], ["isp.example"],
        )

    def run_helo_cold(i: int) -> object:
        return helo_anomalies(
            [f"w{i}x.hotmail.com"], "198.51.100.5", f"host-{i}.dsl.isp.example",
            f"u{i}@hotmail.com", [f"r{i}@example{i}.com"], ["isp.example"],
        )

    headers = Headers(precedence="bulk")

    def run_auto_reply(i: int) -> object:
        return is_auto_reply("noreply@shop.example", headers, 1)

    def run_list_identity(i: int) -> object:
        return list_identity(f"team-bounces+u{i}=example.net@lists.example.org", Headers())

    run_helo_warm(0)  # build the public suffix list outside the timing
    figures = {
        "classify": per_call_us(run_classify, rounds),
        "re.search baseline": per_call_us(run_baseline, rounds),
        "helo_anomalies warm": per_call_us(run_helo_warm, rounds),
        "helo_anomalies cold": per_call_us(run_helo_cold, rounds),
        "is_auto_reply": per_call_us(run_auto_reply, rounds),
        "list_identity": per_call_us(run_list_identity, rounds),
    }
    print(f"rounds per figure: {rounds}, best of {REPEATS}")
    for name, us in figures.items():
        print(f"{name:>22}: {us:8.2f} us/call  {1e6 / us:>12,.0f} calls/s")
    classify_ratio = figures["classify"] / figures["re.search baseline"]
    helo_ratio = figures["helo_anomalies cold"] / figures["helo_anomalies warm"]
    print(f"classify / re.search baseline: {classify_ratio:.1f}x")
    print(f"helo cold / warm:              {helo_ratio:.1f}x")


if __name__ == "__main__":
    main()
