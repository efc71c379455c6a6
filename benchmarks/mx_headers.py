"""Cost per message of what the milter reads on an MX: forwarding and spam verdicts.

Microseconds per message, best of 5, side by side in the same run:

- `forwarded_origin()` on a forwarder's chain, a bot's five forged hops and
  Microsoft 365's seven, against the rule it replaced (more than 4 Received
  headers: a count), as a ratio;
- `spam_verdict()` on SpamAssassin's and rspamd's headers, and on a 10 kB
  hostile X-Spamd-Result against a short one (the parsing is bounded, so the
  ratio stays near 1).

    .venv/bin/python benchmarks/mx_headers.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from extrusion.scoring.events import Headers
from extrusion.scoring.forwarding import forwarded_origin
from extrusion.scoring.verdicts import spam_verdict

REPEATS = 5
FWD = "mail.forwarder.example"
CHAINS = [
    (FWD, "198.51.100.4", "SRS0=abcd=XY=orig.example=user@forwarder.example", [
        f"from {FWD} ({FWD} [198.51.100.4]) by mx.our.example (Postfix) with ESMTPS id 4AbCd",
        f"from mta.orig.example (mta.orig.example [203.0.113.50]) by {FWD} (Postfix) with ESMTP",
    ]),
    ("", "203.0.113.9", "offers@cheap.example", [
        "from pc17 (unknown [203.0.113.9]) by mx.our.example (Postfix) with SMTP id Q",
        *[f"from relay{i}.example.com (relay{i}.example.com [198.18.{i}.1]) by "
          f"relay{i + 1}.example.com with ESMTP id X{i}" for i in range(5)],
    ]),
    ("mail-db8eur05on2100.outbound.protection.outlook.com", "40.107.20.100", "a@contoso.example", [
        "from mail-db8eur05on2100.outbound.protection.outlook.com (mail-db8eur05on2100.outbound"
        ".protection.outlook.com [40.107.20.100]) by mx.our.example (Postfix) with ESMTPS id Q",
        *[f"from AM{i}PR09MB.eurprd09.prod.outlook.com (2603:10a6:10:{i}::3) by "
          f"AM{i + 1}PR09MB.eurprd09.prod.outlook.com with Microsoft SMTP Server"
          for i in range(6)],
    ]),
]
VERDICTS = [
    Headers(x_spam_flag="YES", x_spam_status="Yes, score=7.1 required=5.0 tests=BAYES_99"),
    Headers(x_spam="Yes", x_spamd_result="default: True [15.20 / 15.00]; BAYES_SPAM(5.10)",
            x_rspamd_action="reject"),
    Headers(x_spamd_result="default: False [2.10 / 15.00]; ARC_NA(0.00)[]"),
]
SHORT = Headers(x_spamd_result="default: False [2.10 / 15.00]")
HOSTILE = Headers(x_spamd_result="default: False [2.10 / 15.00]" + "; SYM(1.0)[x]" * 800)


def per_call_us(fn: Callable[[int], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for i in range(rounds):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    rounds = parser.parse_args().rounds

    def forwarded(i: int) -> object:
        name, addr, env, chain = CHAINS[i % len(CHAINS)]
        return forwarded_origin(env, chain, addr, name)

    def counted(i: int) -> object:
        return len(CHAINS[i % len(CHAINS)][3]) > 4  # the rule it replaced

    rows = [
        ("forwarded_origin() (forwarder, forged hops, Microsoft 365)", per_call_us(forwarded,
                                                                                 rounds)),
        ("Received count > 4 (the rule it replaced)", per_call_us(counted, rounds)),
        ("spam_verdict() (SpamAssassin, rspamd, clean)",
         per_call_us(lambda i: spam_verdict(VERDICTS[i % len(VERDICTS)]), rounds)),
        ("spam_verdict(), short X-Spamd-Result", per_call_us(lambda i: spam_verdict(SHORT),
                                                             rounds)),
        ("spam_verdict(), 10 kB hostile X-Spamd-Result",
         per_call_us(lambda i: spam_verdict(HOSTILE), rounds)),
    ]
    print("| call | us/call | calls/s |\n| --- | ---: | ---: |")
    for name, us in rows:
        print(f"| {name} | {us:.2f} | {1e6 / us:,.0f} |")
    print(f"\nratios: forwarding / count {rows[0][1] / rows[1][1]:.0f}x; "
          f"hostile / short X-Spamd-Result {rows[4][1] / rows[3][1]:.2f}x")


if __name__ == "__main__":
    main()
