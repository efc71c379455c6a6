"""Log lines per second of the parser and joiner with an MX's extra lines, side by side.

    .venv/bin/python benchmarks/mxlog.py [--messages 20000] [--repeat 3] [--repo PATH]

Generates a Postfix log with `extrusion_dev.generate`, then a second one with an MX's
lines mixed in (after every message: a postscreen PREGREET and DNSBL verdict, a
postscreen reject in its comma form, an smtpd reject with a HELO, an amavis and a spamd
verdict line: six MX lines per message), and times `LogFeed.line()`
over each (events go nowhere), interleaved, best of `--repeat`, by CPU time. Prints
lines/s of both
and their ratio, and how many `ClientEvidence` events the MX log gave. `--repo` times
another checkout's code on the same logs (e.g. main's, to see what reading the new lines
costs on an ordinary log).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

from sinks import CountingEngine


def _mx_lines(text: str) -> str:
    """The generated log with an MX's lines after every `removed` line (same stamp)."""
    out: list[str] = []
    n = 0
    for line in text.splitlines():
        out.append(line)
        if not line.endswith(": removed"):
            continue
        n += 1
        stamp, host = line[:15], line.split()[3]
        ip = f"198.51.{n % 200}.{n % 250 + 1}"
        qid = line.rsplit(": ", 2)[-2].split()[-1]
        for prog, msg in (
            ("postfix/postscreen", f"PREGREET 11 after 0.07 from [{ip}]:4{n % 9999}: EHLO x\\r\\n"),
            ("postfix/postscreen", f"DNSBL rank 3 for [{ip}]:4{n % 9999}"),
            ("postfix/postscreen", f"NOQUEUE: reject: RCPT from [{ip}]:4{n % 9999}: 550 5.7.1 "
                                   f"Service unavailable; client [{ip}] blocked using "
                                   f"zen.spamhaus.org; from=<a@b{n % 50}.example>, "
                                   f"to=<u{n}@our.example>, proto=ESMTP, helo=<bot{n % 7}>"),
            ("postfix/smtpd", f"NOQUEUE: reject: RCPT from unknown[{ip}]: 550 5.1.1 "
                              f"<v{n}@our.example>: Recipient address rejected: User unknown in "
                              f"local recipient table; from=<a@b.example> to=<v{n}@our.example>"
                              f" proto=ESMTP helo=<our.example>"),
            ("amavis", f"({n:05d}-01) Blocked SPAM {{RejectedInbound}}, [{ip}]:5123 [{ip}] "
                       f"<a@b.example> -> <x@our.example>, Queue-ID: {qid}, Message-ID: "
                       f"<m{n}@b>, mail_id: x, Hits: 12.3, size: 1234, 567 ms"),
            ("spamd", f"spamd: result: Y 15 - BAYES_99 scantime=0.3,size=1234,user=x,uid=1,"
                      f"required_score=5.0,rhost=localhost,raddr=127.0.0.1,rport=1,"
                      f"mid=<m{n}@b>,autolearn=no"),
        ):
            out.append(f"{stamp} {host} {prog}[{1000 + n % 5000}]: {msg}")
    return "\n".join(out) + "\n"


def _time(feed_cls: Any, lines: list[str]) -> tuple[float, CountingEngine]:
    sink = CountingEngine()
    feed = feed_cls(sink, reference_time=time.time(), guard=False)
    # CPU time of this process: on a shared machine wall time measures the neighbours.
    t0 = time.process_time()
    for line in lines:
        feed.line(line)
    feed.finish()
    return time.process_time() - t0, sink


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    args = ap.parse_args()
    sys.path.insert(0, str(args.repo))
    from extrusion.maillog.feed import LogFeed
    from extrusion_dev.generate import generate

    buf = io.StringIO()
    generate(buf, seed=7, messages=args.messages)
    plain = buf.getvalue().splitlines()
    mx = _mx_lines(buf.getvalue()).splitlines()
    best = {"plain": float("inf"), "mx": float("inf")}
    sinks: dict[str, CountingEngine] = {}
    for _ in range(args.repeat):
        for name, lines in (("plain", plain), ("mx", mx)):
            seconds, sinks[name] = _time(LogFeed, lines)
            best[name] = min(best[name], seconds)
    rate = {k: len(v) / best[k] for k, v in (("plain", plain), ("mx", mx))}
    print(f"code: {args.repo}")
    print(f"{'log':<28}{'lines':>10}{'lines/s':>12}{'events':>9}{'evidence':>10}")
    print(f"{'generated (smarthost)':<28}{len(plain):>10,}{rate['plain']:>12,.0f}"
          f"{sinks['plain'].events:>9,}{sinks['plain'].evidence_events:>10,}")
    print(f"{'same + MX lines':<28}{len(mx):>10,}{rate['mx']:>12,.0f}"
          f"{sinks['mx'].events:>9,}{sinks['mx'].evidence_events:>10,}")
    print(f"MX log / plain log, lines/s: {rate['mx'] / rate['plain']:.2f}")


if __name__ == "__main__":
    main()
