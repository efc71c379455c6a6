"""`extrusion replay` on outcomes without their client lines, beside the same with them.

    .venv/bin/python benchmarks/replay_orphans.py [--messages 40000] [--repeat 3]

A log cut at its start (rotated, or collected from a relay that never saw the
clients) holds delivery lines for queue ids the replay never saw arrive.
Writes two Postfix logs with the same deliveries (one recipient per message,
a fifth bounced): "orphans" has only the `smtp` delivery and `qmgr removed`
lines, "joined" also each message's `smtpd client=`, `cleanup` and `qmgr
from=` lines. Times `extrusion replay LOG` on each (best of `--repeat`,
interleaved) and prints lines/s and outcomes/s and their ratio.

Then the engine alone, in the replay's set-up (throw-away SQLite store,
indexes deferred, a flush every 32,768 events): the orphan outcomes with
`Engine.memory_is_whole` off (each one asks the store for its queue id, as
every engine did before) and on (as replay sets it), side by side.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extrusion import config as configmod  # noqa: E402
from extrusion.scoring.engine import Engine  # noqa: E402
from extrusion.scoring.events import Outcome, Status  # noqa: E402
from extrusion.scoring.store import Store  # noqa: E402

START = time.time() - 3 * 86400


def stamp(t: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.localtime(t))


def write_logs(tmp: Path, messages: int) -> tuple[Path, Path]:
    orphans, joined = tmp / "orphans.log", tmp / "joined.log"
    with open(orphans, "w") as fo, open(joined, "w") as fj:
        for i in range(messages):
            t = START + i * 0.5
            qid = f"{0x3F000000 + i:X}A"
            client = f"192.0.2.{i % 200 + 1}"
            rcpt = f"user{i}@example.net"
            if i % 5:
                tail = "dsn=2.0.0, status=sent (250 2.0.0 Ok)"
            else:
                tail = ("dsn=5.1.1, status=bounced (host mx.example.net[198.51.100.9] said: "
                        f"550 5.1.1 <{rcpt}>: User unknown (in reply to RCPT TO command))")
            head = [
                f"{stamp(t)} mta1 postfix/smtpd[100]: {qid}: client=pc{i % 200}[{client}]",
                f"{stamp(t)} mta1 postfix/cleanup[101]: {qid}: message-id=<{qid}@pc>",
                f"{stamp(t)} mta1 postfix/qmgr[102]: {qid}: from=<c{i % 200}@customer.example>,"
                " size=2206, nrcpt=1 (queue active)",
            ]
            body = [
                f"{stamp(t + 1)} mta1 postfix/smtp[103]: {qid}: to=<{rcpt}>, relay=mx.example.net"
                f"[198.51.100.9]:25, delay=1.1, delays=0.1/0/0.5/0.5, {tail}",
                f"{stamp(t + 1)} mta1 postfix/qmgr[102]: {qid}: removed",
            ]
            fo.write("".join(x + "\n" for x in body))
            fj.write("".join(x + "\n" for x in head + body))
    return orphans, joined


def replay_seconds(config: Path, log: Path) -> float:
    exe = Path(sys.executable).with_name("extrusion")
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "replay", "--config", str(config), str(log)],
                          capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
    if not re.search(r"recipient outcomes", proc.stdout):
        raise SystemExit(f"unexpected replay output: {proc.stdout[:500]}")
    return took


def engine_seconds(tmp: Path, messages: int, memory_is_whole: bool) -> float:
    """Orphan outcomes into an engine set up as replay sets it up."""
    db = Path(tempfile.mkdtemp(dir=tmp)) / "engine.db"  # a fresh store each run
    cfg = configmod.from_dict({"store": {"url": f"sqlite:///{db}",
                                         "spool_dir": str(tmp / "spool"),
                                         "flush_batch": 1 << 62}}, tmp / "x.toml")
    store = Store(cfg.store.url, durable=False)
    now = [START]
    engine = Engine(cfg, store, lambda: now[0], own_store=True)
    engine.memory_is_whole = memory_is_whole
    events = [Outcome(time=START + i, queue_id=f"{0x3F000000 + i:X}A",
                      recipient=f"user{i}@example.net",
                      status=Status.SENT if i % 5 else Status.BOUNCED, dsn="2.0.0",
                      reply="250 Ok", mta="mta1") for i in range(messages)]
    with store.deferred_indexes(build=False):
        start = time.perf_counter()
        for i, event in enumerate(events):
            now[0] = event.time
            engine.outcome(event)
            if not (i + 1) % 32768:
                engine.flush()
        engine.flush()
        took = time.perf_counter() - start
    engine.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory(prefix="bench-orphans-") as d:
        tmp = Path(d)
        orphans, joined = write_logs(tmp, n)
        config = tmp / "extrusion.toml"
        config.write_text('[general]\nlog_level = "warning"\nhostname = "mta1"\n')
        best = {"orphans": float("inf"), "joined": float("inf")}
        for _ in range(args.repeat):
            best["orphans"] = min(best["orphans"], replay_seconds(config, orphans))
            best["joined"] = min(best["joined"], replay_seconds(config, joined))
        lines = {"orphans": 2 * n, "joined": 5 * n}
        print(f"{n:,} outcomes, best of {args.repeat}, load average {os.getloadavg()[0]:.1f}\n")
        print("| log | lines | wall s | lines/s | outcomes/s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, s in best.items():
            print(f"| {name} | {lines[name]:,} | {s:.2f} | {lines[name] / s:,.0f} | {n / s:,.0f} |")
        print(f"\noutcomes/s, orphans / joined: {best['joined'] / best['orphans']:.2f}")

        ask = min(engine_seconds(tmp, n, False) for _ in range(args.repeat))
        whole = min(engine_seconds(tmp, n, True) for _ in range(args.repeat))
        print("\n| engine, orphan outcomes | s | outcomes/s |")
        print("| --- | ---: | ---: |")
        print(f"| store asked per outcome | {ask:.2f} | {n / ask:,.0f} |")
        print(f"| memory_is_whole (replay) | {whole:.2f} | {n / whole:,.0f} |")
        print(f"\nratio: {ask / whole:.1f}x")


if __name__ == "__main__":
    main()
