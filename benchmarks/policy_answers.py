"""Same policy answers before and after: every reply of the policy server, two trees.

    .venv/bin/python benchmarks/policy_answers.py [--base REV | --compiled DIR] [--requests 30000]

`replay_verdicts.py` checks the engine as the log drives it; this checks it as
policy requests drive it (protocol, parser, responder, `decide()`). Each tree
(the checkout's code and `--base`'s, by default `git merge-base HEAD main`)
answers, in a process of its own, the same two streams over 16 connections of
Twisted's StringTransport, on a clock that advances 0.37 s per request, with
the engine flushed every 2,000 requests: `policyd.py`'s stream, and a varied
one (HELO literals and lies, null, robot, freemail and BATV senders, recipients
in the HELO's domain, unauthenticated clients, senders over tight limits).
Prints each stream's digest of every reply byte and the count of each action,
and the digest of every state change the engine told; exits 1 if anything differs.
With `--compiled DIR` the two trees are the checkout as it is (pure Python) and the
checkout compiled with mypyc in DIR (`scripts/compiled-tree DIR`, as `pip install .`
builds it).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import policyd  # noqa: E402
from trees import child_result, compiled, export  # noqa: E402

SECONDS_PER_REQUEST = 0.37
FLUSH_EVERY = 2000
CONNECTIONS = 16
# Tighter than policyd.py's, so that the varied stream's senders meet their limits.
LIMITS = {"messages_per_hour = 500": "messages_per_hour = 60",
          "recipients_per_hour = 2000": "recipients_per_hour = 150"}
HELOS = ("pc.{u}.example", "[{c}]", "{c}", "JOHNS-PC", "mail.usa.net", "localhost",
         "gmail.com", "mx.remote.example")
SENDERS = ("{u}@customer.example", "", "<>", "noreply@shop.example", "{u}@gmail.com",
           "{u}@usa.net", "mailer-daemon@x.example", "prvs=12ab=bob@b{k}.example")
RECIPIENTS = ("r{j}.{n}@remote.example", "x{j}@usa.net", "y{j}@customer.example",
              "z{j}@d{k}.example")


def varied(total: int, seed: int = 5) -> list[bytes]:
    """Messages of 1-6 recipients (MAIL, each RCPT, END-OF-MESSAGE) from 300 customers
    and 3 bots, each message with a HELO, sender and client drawn from the lists above."""
    rng = random.Random(seed)
    out: list[bytes] = []
    n = 0
    while len(out) < total:
        n += 1
        user = f"user{rng.randrange(300)}" if rng.random() < 0.9 else f"bot{rng.randrange(3)}"
        client = f"198.51.{rng.randrange(4)}.{rng.randrange(1, 30)}"
        k = rng.randrange(50)
        helo = rng.choice(HELOS).format(u=user, c=client)
        sender = rng.choice(SENDERS).format(u=user, k=k)
        sasl = user if rng.random() < 0.7 else ""
        count = rng.randint(1, 6)

        session = (f"helo_name={helo}\nsender={sender}\nclient_address={client}\n"
                   "client_name=unknown\nreverse_client_name=unknown\n"
                   f"instance={n}.1\nsasl_method=plain\nsasl_username={sasl}\n"
                   "sasl_sender=\nsize=0\n")
        out.append(_request(session, "MAIL", "", 0, ""))
        for j in range(count):
            rcpt = rng.choice(RECIPIENTS).format(j=j, n=n, k=k)
            out.append(_request(session, "RCPT", rcpt, 0, ""))
        out.append(_request(session, "END-OF-MESSAGE", "", count, f"{n:011X}"))
    return out[:total]


def _request(session: str, state: str, rcpt: str, count: int, qid: str) -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n"
            f"queue_id={qid}\nrecipient={rcpt}\nrecipient_count={count}\n{session}\n"
            ).encode()


def answers(requests: int) -> dict[str, Any]:
    """This process's tree answering both streams (run with PYTHONPATH at the tree)."""
    from twisted.internet import task

    from extrusion.config.load import load
    from extrusion.scoring.engine import open_engine

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        conf = policyd.EXTRUSION_CONFIG.format(tmp=tmp, port=0, api_port=0)
        for old, new in LIMITS.items():
            conf = conf.replace(old, new)
        (tmp / "c.toml").write_text(conf)
        clock = task.Clock()
        clock.advance(1_790_000_000.0)
        engine = open_engine(load(tmp / "c.toml"), clock.seconds)
        changes: list[Any] = []
        engine.add_listener(changes.append)
        conns = policyd.string_connections(engine, clock, clock.seconds, CONNECTIONS,
                                           idle_timeout=0)
        try:
            for name, stream in (("policyd.py", policyd.stream(requests)),
                                 ("varied", varied(requests))):
                digest, counts = hashlib.sha256(), collections.Counter[str]()
                for i, req in enumerate(stream):
                    proto, transport = conns[i % CONNECTIONS]
                    proto.dataReceived(req)
                    reply = transport.value()
                    transport.clear()
                    digest.update(reply)
                    counts[reply.split(b"\n", 1)[0].split(b" ", 1)[0].decode()] += 1
                    clock.advance(SECONDS_PER_REQUEST)
                    if i % FLUSH_EVERY == FLUSH_EVERY - 1:
                        engine.flush()
                out[name] = {"sha256": digest.hexdigest(), "answers": dict(sorted(counts.items()))}
            told = hashlib.sha256("\n".join(map(repr, changes)).encode()).hexdigest()
            out["state changes"] = {"count": len(changes), "sha256": told}
        finally:
            engine.close()
    return out


def run_tree(path: Path | None, requests: int) -> dict[str, Any]:
    return child_result(path, [str(Path(__file__).resolve()), "--dump",
                               "--requests", str(requests)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="")
    ap.add_argument("--requests", type=int, default=30000)
    ap.add_argument("--compiled", type=Path, default=None, metavar="DIR",
                    help="compare the checkout with itself compiled in DIR instead")
    ap.add_argument("--dump", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dump:
        print(json.dumps(answers(args.requests)))
        return 0
    if args.compiled:
        before = run_tree(None, args.requests)
        after = run_tree(compiled(args.compiled), args.requests)
    else:
        base = args.base or subprocess.run(
            ["git", "-C", str(REPO), "merge-base", "HEAD", "main"],
            capture_output=True, text=True, check=True).stdout.strip()
        with tempfile.TemporaryDirectory() as d:
            before = run_tree(export(base, Path(d) / "base"), args.requests)
        after = run_tree(None, args.requests)
    for name in before:
        print(f"{name}: before {before[name]}\n{' ' * len(name)}  after  {after[name]}")
    same = before == after
    print("identical" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
