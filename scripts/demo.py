"""`make demo`: extrusion containing a spam bot on a real Postfix, in about a minute.

Starts a throw-away Postfix on loopback (wired with conf/postfix/*.snippet),
a remote side that refuses what the Internet refuses, `extrusion milter` and
`extrusion policyd` with a SQLite store, then plays traffic: normal customers,
a mailing-list post, and a bot outbreak. It prints the mail flowing, the
bot's failures climbing, the throttle, the hold, and the abuse report, then
stops everything it started.

Needs root and the Debian package postfix (`make demo` installs it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.mta.daemons import ExtrusionDaemons, extrusion_daemons  # noqa: E402
from tests.postfix_harness import (  # noqa: E402
    PostfixInstance,
    postfix_missing,
    running_instance,
)
from tests.smtp_remote import RemoteSMTP  # noqa: E402

BOT = "127.0.0.66"
BOT_KEY = f"ip:{BOT}"
CUSTOMERS = (("127.0.0.10", "anna@bakery.example"), ("127.0.0.20", "office@lawyers.example"))
LIST_SOURCE = "127.0.0.11"
LIST_SIZE = 200
MAX_BOT_MESSAGES = 80
BOT_PACE = 0.25


def say(text: str = "") -> None:
    print(text, flush=True)


def state_of(d: ExtrusionDaemons, key: str) -> tuple[str, float]:
    info = d.sender(key)
    if not info:
        return "ok", 0.0
    return str(info["state"]), float(info.get("score") or 0.0)


def failures_logged(pf: PostfixInstance, tag: str) -> int:
    text = pf.log_text()
    return sum(1 for line in text.splitlines()
               if f"-{tag}-" in line and "status=bounced" in line)


def normal_customers(pf: PostfixInstance, remote: RemoteSMTP) -> None:
    say("== 1. Customers send their everyday mail")
    for source, sender in CUSTOMERS:
        for i in range(3):
            rcpt = f"friend{i}@{'partner' if i else 'family'}.example"
            r = pf.send(sender, [rcpt], source=source, helo=f"pc.{sender.split('@')[1]}")
            assert r.queue_id is not None
            out = pf.wait_removed(r.queue_id)[rcpt]
            say(f"   {source:12s} {sender:24s} -> {rcpt:26s} {out.status} ({out.dsn})")
    say(f"   the remote side has received {len(remote.messages)} messages")


def mailing_list(pf: PostfixInstance, d: ExtrusionDaemons) -> None:
    say()
    say(f"== 2. A customer's newsletter to {LIST_SIZE} subscribers, 10% of them long gone")
    rcpts = [(f"unknown{i}" if i % 10 == 0 else f"reader{i}") + "@subscribers.example"
             for i in range(LIST_SIZE)]
    r = pf.send("news@shop.example", rcpts, source=LIST_SOURCE, helo="mail.shop.example",
                headers={"List-Id": "<news.shop.example>", "Precedence": "list"})
    assert r.queue_id is not None
    final = pf.wait_removed(r.queue_id, timeout=60)
    sent = sum(o.status == "sent" for o in final.values())
    say(f"   accepted {len(r.accepted)} recipients; delivered {sent}, "
        f"failed {len(final) - sent}")
    time.sleep(2)
    state, score = state_of(d, f"ip:{LIST_SOURCE}")
    say(f"   extrusion: ip:{LIST_SOURCE} is {state.upper()} (score {score:.1f}): "
        f"a list's failures are discounted, the sender is not touched")


def outbreak(pf: PostfixInstance, d: ExtrusionDaemons) -> None:
    say()
    say(f"== 3. A customer's PC ({BOT}) is infected: a spam bot starts pumping")
    say("   forged freemail senders, a random HELO, mostly invented recipients")
    tag = uuid.uuid4().hex[:6]
    throttled = held = False
    last_state = ""
    for i in range(MAX_BOT_MESSAGES):
        rcpts = [f"unknown-{tag}-{i}@victims.example",
                 *(f"greydead-{tag}-{i}-{j}@victims.example" for j in range(3)),
                 f"victim-{tag}-{i}@victims.example"]
        r = pf.send(f"{uuid.uuid4().hex[:8]}@freemail.example", rcpts, source=BOT,
                    helo=uuid.uuid4().hex[:7], subject="cheap meds", body="buy now\n")
        codes = sorted({code for code, _ in r.rcpt_replies.values()})
        state, score = state_of(d, BOT_KEY)
        failed = failures_logged(pf, tag)
        note = ""
        if any(400 <= c < 500 for c in codes) and not throttled:
            throttled = True
            reply = next(t for c, t in r.rcpt_replies.values() if 400 <= c < 500)
            note = f"  <- THROTTLED: {reply}"
        if r.queue_id and r.queue_id in pf.held():
            held = True
            note = f"  <- HELD: message {r.queue_id} is in Postfix's hold queue"
        if note or state != last_state or i % 5 == 0:
            say(f"   msg {i:3d}  replies {codes}  failed recipients so far {failed:3d}  "
                f"state {state:9s} score {score:5.1f}{note}")
        last_state = state
        if held:
            break
        time.sleep(BOT_PACE)
    hold_queue = [m for m in pf.queue() if m["queue_name"] == "hold"]
    say(f"   postqueue -j: {len(hold_queue)} of the bot's messages wait in the hold queue")


def report(d: ExtrusionDaemons) -> None:
    say()
    say("== 4. What the abuse desk reads: extrusion report --sender " + BOT_KEY)
    time.sleep(1.5)  # both daemons write what they know to the store every second or so
    out = d.cli("report", "--sender", BOT_KEY, "--format", "text").stdout
    lines = out.splitlines()
    for line in lines[:40]:
        say("   " + line)
    if len(lines) > 40:
        say(f"   ... ({len(lines) - 40} more lines)")


def reported_queue_ids(d: ExtrusionDaemons) -> set[str]:
    out = d.cli("report", "--sender", BOT_KEY, "--format", "json").stdout
    return {str(m["queue_id"]) for s in json.loads(out)["senders"]
            for m in s.get("messages", [])}


def release(pf: PostfixInstance, d: ExtrusionDaemons) -> None:
    say()
    say("== 5. The customer cleaned the PC: extrusion release " + BOT_KEY)
    # what is released is what the store knows of; the daemons write every second or so
    deadline = time.monotonic() + 15
    while not set(pf.held()) <= reported_queue_ids(d) and time.monotonic() < deadline:
        time.sleep(0.5)
    out = d.cli("release", BOT_KEY, "--reason", "customer cleaned the PC", "--who", "demo")
    say("   " + out.stdout.strip())
    deadline = time.monotonic() + 30
    while pf.held() and time.monotonic() < deadline:
        time.sleep(0.3)
    say(f"   hold queue now holds {len(pf.held())} messages")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args(argv)
    if reason := postfix_missing():
        print(f"make demo: {reason}", file=sys.stderr)
        return 69
    work = Path(tempfile.mkdtemp(prefix="extrusion-demo-"))
    remote = RemoteSMTP().start()
    try:
        with running_instance(remote.port) as pf:
            say(f"Postfix {pf.root} listening on 127.0.0.1:{pf.smtpd_port}, relaying to the "
                f"remote side on 127.0.0.1:{remote.port}")
            with extrusion_daemons(work, pf) as d:
                say(f"extrusion milter on {pf.milter_address}, policyd on {pf.policy_address}, "
                    f"store {d.store_path}")
                say()
                normal_customers(pf, remote)
                mailing_list(pf, d)
                outbreak(pf, d)
                report(d)
                release(pf, d)
            daemons_left = [n for n in ("milter", "policyd") if d.running(n)]
        # running_instance() has stopped Postfix and killed anything that outlived it
        left = [*pf.pids(), *daemons_left]
        say()
        say("== Stopped extrusion, Postfix and the remote side: "
            + ("nothing left running" if not left else f"still running: {left}"))
    finally:
        remote.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
