"""µs per log line of the parser and joiner under a flood of distinct clients and queue ids.

    .venv/bin/python benchmarks/flood.py --base f66898d [--messages 120000] [--repeat 2]

Every message of the generated log comes from a client never seen before and has a
queue id that never repeats: the smtpd refuses one recipient (`ClientTracker`, 50,000
clients kept), accepts another two, hands one to a content filter on loopback whose
next queue id is never logged (`Handoffs.links`, 10,000 kept) and defers the other, so
the message stays open until the joiner's `--max-queue-ids` pushes it out. Each bound
is full after its first fill, and from then on every message drops the oldest entry of
each memory: the case where a plain dict's `next(iter(d))` walks the slots its
deletions left.

`--ordinary` times instead `extrusion_dev.generate`'s log of `--messages` messages (few
clients, no bound reached): what the change costs where nothing floods.

`LogFeed.line()` over the whole log (events counted, nowhere stored), by CPU time,
in one process per tree: `git archive` of `--base`, then this checkout, alternated
`--repeat` times, best of each. The machine is shared: only the ratio of one run
means anything.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sinks import CountingEngine
from trees import child_result, export

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START = 1_780_000_000.0  # log time of the first line
PER_SECOND = 40  # messages a second of log time: none ages out (3 hours) before its bound


def flood_lines(messages: int) -> list[str]:
    """The flood's log: every message a new client, every queue id new."""
    out: list[str] = []
    for n in range(messages):
        t = START + n / PER_SECOND
        stamp = time.strftime("%b %e %H:%M:%S", time.gmtime(t))
        ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        client = f"unknown[{ip}]"
        q, nq = f"{n:010X}", f"F{n:09X}"
        pid = 1000 + n % 30000

        def log(prog: str, msg: str, pid: int = pid, stamp: str = stamp) -> None:
            out.append(f"{stamp} mx1 postfix/{prog}[{pid}]: {msg}")

        log("smtpd", f"connect from {client}")
        log("smtpd", f"NOQUEUE: reject: RCPT from {client}: 550 5.1.1 <x{n}@our.example>: "
                     f"Recipient address rejected: User unknown in local recipient table; "
                     f"from=<s{n}@spam.example> to=<x{n}@our.example> proto=ESMTP "
                     f"helo=<h{n}.spam.example>")
        log("smtpd", f"{q}: client={client}")
        log("cleanup", f"{q}: message-id=<{n}.{q}@spam.example>", pid + 1)
        log("qmgr", f"{q}: from=<s{n}@spam.example>, size=2345, nrcpt=2 (queue active)", 99)
        log("smtpd", f"disconnect from {client} ehlo=1 mail=1 rcpt=2/3 data=1 quit=1 "
                     f"commands=6/7")
        log("smtp", f"{q}: to=<a{n}@our.example>, relay=127.0.0.1[127.0.0.1]:10025, "
                    f"delay=0.2, delays=0.01/0/0.1/0.1, dsn=2.0.0, status=sent "
                    f"(250 2.0.0 Ok: queued as {nq})", pid + 2)
        log("smtp", f"{q}: to=<b{n}@far.example>, relay=mx.far.example[198.51.100.7]:25, "
                    f"delay=1.2, delays=0.01/0/0.6/0.6, dsn=4.7.1, status=deferred "
                    f"(450 4.7.1 try again later)", pid + 3)
    return out


def ordinary_lines(messages: int) -> list[str]:
    sys.path.append(str(ROOT))  # after the tree being timed
    from extrusion_dev.generate import generate

    buf = io.StringIO()
    generate(buf, seed=7, messages=messages)
    return buf.getvalue().splitlines()


def child(messages: int, max_queue_ids: int, ordinary: bool) -> dict[str, float]:
    """In the tree on sys.path: CPU seconds of `LogFeed.line()` over the log."""
    from extrusion.maillog.feed import LogFeed
    from extrusion.maillog.joinstate import JoinSettings

    lines = ordinary_lines(messages) if ordinary else flood_lines(messages)
    sink = CountingEngine()
    feed = LogFeed(sink, settings=JoinSettings(max_queue_ids=max_queue_ids),
                   reference_time=time.time() if ordinary else START, guard=False)
    t0 = time.process_time()
    for line in lines:
        feed.line(line)
    cpu = time.process_time() - t0
    feed.finish()
    return {"cpu_s": cpu, "lines": len(lines), "events": sink.events + sink.evidence_events}


def run_tree(tree: Path, messages: int, max_queue_ids: int, ordinary: bool
             ) -> dict[str, Any]:
    return child_result(tree, [str(HERE / "flood.py"), "--child", "--messages", str(messages),
                               "--max-queue-ids", str(max_queue_ids),
                               *(["--ordinary"] if ordinary else [])])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--messages", type=int, default=120_000)
    ap.add_argument("--max-queue-ids", type=int, default=50_000,
                    help="the joiner's bound (the configured default, 200,000, takes a "
                         "flood four times as long to fill)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ordinary", action="store_true",
                    help="extrusion_dev.generate's log instead of the flood")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.messages, args.max_queue_ids, args.ordinary)))
        return 0
    with tempfile.TemporaryDirectory(prefix="flood-") as tmp:
        base = export(args.base, Path(tmp) / "base")
        best: dict[str, float] = {}
        events: dict[str, float] = {}
        for rnd in range(args.repeat):
            for name, tree in (("base", base), ("this tree", ROOT)):
                r = run_tree(tree, args.messages, args.max_queue_ids, args.ordinary)
                us = 1e6 * r["cpu_s"] / r["lines"]
                best[name] = min(best.get(name, us), us)
                events[name] = r["events"]
                print(f"round {rnd + 1} {name:9s} {us:.2f} µs CPU per line "
                      f"({r['lines']:.0f} lines, {r['events']:.0f} events)", flush=True)
    what = "ordinary log" if args.ordinary else "flood"
    print(f"{what}: {args.messages} messages, max_queue_ids {args.max_queue_ids}; best of "
          f"{args.repeat}: base ({args.base}) {best['base']:.2f} µs, this tree "
          f"{best['this tree']:.2f} µs, ratio {best['this tree'] / best['base']:.2f}; "
          f"events {'identical' if events['base'] == events['this tree'] else 'DIFFER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
