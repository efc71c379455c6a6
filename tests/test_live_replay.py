"""Live and replay agree: a mixed hour at the smarthost through the real Postfix and
`extrusion serve`, then the same Postfix log lines through `extrusion replay --json`.

Seven customers, each on its own loopback address (sender key `ip:127.0.0.13x`):
two ordinary customers, a mailing list (one post, ~10 % dead), a rejection
daemon (auto-replies *without* `<>`, one recipient each, mostly to forged
addresses), a bounce relay (`<>` notices, mostly failing), a spam bot and a
worm. The live engine sees more than the log holds (the policy server's
refusals of a throttled sender, and the milter's HELO and headers once a
sender is under watch: the shipped wiring attaches it only then); replay sees
only the log. What must agree is what the log decides: the state of every sender
whose evidence is all in the log, the rejection daemon's misconfiguration,
and that the bot and the worm are contained. `[general] hostname` is left
unset (the shipped default): the milter and the log feed must still count
each message once.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from extrusion.scoring.events import State
from extrusion.scoring.store import Store
from tests.mta.daemons import ExtrusionDaemons, deep_merge, extrusion_daemons, to_toml
from tests.postfix_harness import PostfixInstance, SendResult
from tests.smtp_remote import VIRUS_MARKER
from tests.test_integration_postfix import CONTAINED, run_spam_bot

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NORMAL_A = "127.0.0.130"
NORMAL_B = "127.0.0.131"
LIST = "127.0.0.132"
DAEMON = "127.0.0.133"
RELAY = "127.0.0.134"
BOT = "127.0.0.135"
WORM = "127.0.0.136"
ACTORS = (NORMAL_A, NORMAL_B, LIST, DAEMON, RELAY, BOT, WORM)
# Whose evidence is all in the log: live and replay must reach the same state.
LOG_ONLY = (NORMAL_A, NORMAL_B, LIST, DAEMON, RELAY)

DAEMON_NOTICES = 30  # one recipient each; all but every tenth to a forged address
RELAY_NOTICES = 20  # null sender; three in four fail
LIST_MEMBERS = 100  # every tenth dead
WORM_BOOK = 40
SETTLE_SECONDS = 60.0
QUIET_SECONDS = 3.0  # no change in any actor's state, score or counters for this long
REPLAY_TIMEOUT = 120.0

# The scoring settings shared by the live daemons and the replay; hostname unset.
SETTINGS: dict[str, Any] = {"general": {"hostname": ""}}


def key(addr: str) -> str:
    return f"ip:{addr}"


def rank(state: str) -> int:
    return State(state).rank


@dataclass
class Traffic:
    """What Postfix queued for each actor (queue ids from its 250 replies)."""

    queued: dict[str, list[str]] = field(default_factory=dict)

    def sent(self, addr: str, result: SendResult) -> SendResult:
        if result.queue_id is not None:
            self.queued.setdefault(addr, []).append(result.queue_id)
        return result


@pytest.fixture
def daemons(postfix: PostfixInstance, tmp_path: Path) -> Iterator[ExtrusionDaemons]:
    with extrusion_daemons(tmp_path / "live", postfix, SETTINGS) as d:
        yield d
    for qid in postfix.held():  # held mail of this scenario must not leak into the next
        postfix.delete(qid)


# --- the actors --------------------------------------------------------------------------------


def normal_customers(pf: PostfixInstance, t: Traffic, tag: str) -> None:
    for i in range(4):
        rcpts = [f"friend-{tag}-{i}@remote.example", f"colleague-{tag}-{i}@other.example"]
        if i == 3:
            rcpts.append(f"unknown-{tag}-typo@remote.example")  # one old address
        t.sent(NORMAL_A, pf.send(f"anna@customer-{tag}.example", rcpts, source=NORMAL_A,
                                 helo=f"pc-{tag}.customer.example"))
    for i in range(3):
        t.sent(NORMAL_B, pf.send(f"bob@shop-{tag}.example", [f"client-{tag}-{i}@remote.example"],
                                 source=NORMAL_B, helo=f"mail.shop-{tag}.example"))


def mailing_list(pf: PostfixInstance, t: Traffic, tag: str) -> None:
    rcpts = [(f"unknown-{tag}-m{i}" if i % 10 == 0 else f"member-{tag}-{i}") + "@remote.example"
             for i in range(LIST_MEMBERS)]
    t.sent(LIST, pf.send(f"news@list-{tag}.example", rcpts, source=LIST,
                         helo="lists.customer.example",
                         headers={"List-Id": f"<news.{tag}.customer.example>",
                                  "List-Unsubscribe": "<mailto:leave@customer.example>",
                                  "Precedence": "list"}))


def rejection_daemon(pf: PostfixInstance, t: Traffic, tag: str) -> None:
    """"Undeliverable" notices to the forged senders of incoming spam, not from <>.

    The robot local part (postmaster) is what the log shows of it; the milter, when
    attached to it, also reads Auto-Submitted."""
    for i in range(DAEMON_NOTICES):
        rcpt = (f"reader-{tag}-{i}" if i % 10 == 0 else f"unknown-{tag}-d{i}") \
            + f"@forged{i % 3}.example"
        t.sent(DAEMON, pf.send(f"postmaster@corp-{tag}.example", [rcpt], source=DAEMON,
                               helo=f"gw.isp-{tag}.example",
                               subject="Undeliverable: your message",
                               headers={"Auto-Submitted": "auto-replied"},
                               body="Your message could not be delivered.\n"))


def bounce_relay(pf: PostfixInstance, t: Traffic, tag: str) -> None:
    for i in range(RELAY_NOTICES):
        rcpt = (f"user-{tag}-{i}" if i % 4 == 0 else f"unknown-{tag}-r{i}") + "@remote.example"
        t.sent(RELAY, pf.send("", [rcpt], source=RELAY, helo=f"smtp.relay-{tag}.example",
                              subject="Delivery Status Notification (Failure)",
                              body="Delivery to the following recipients failed.\n"))


def worm(pf: PostfixInstance, d: ExtrusionDaemons, t: Traffic, tag: str) -> None:
    """Mails itself to an address book, two contacts at a time, until its mail is held
    or refused (a worm does not stop when throttled); the remote refuses the virus."""
    book = [f"contact-{tag}-{i}@remote.example" for i in range(WORM_BOOK)]
    for i in range(0, len(book), 2):
        result = t.sent(WORM, pf.send(f"victim-{tag}@customer.example", book[i:i + 2],
                                      helo="JOHNS-PC", source=WORM,
                                      subject="Re: your document",
                                      body=f"see attachment {VIRUS_MARKER}\n"))
        if result.queue_id is None or result.queue_id in pf.held():
            return
        pf.wait_removed(result.queue_id)
        time.sleep(0.3)
    pytest.fail(f"the worm went through its address book: {_live_state(d, key(WORM))}")


# --- reading the verdicts ----------------------------------------------------------------------


def _live_state(d: ExtrusionDaemons, sender: str) -> str:
    info = d.sender(sender)
    return str(info["state"]) if info else "unknown"


def _snapshot(d: ExtrusionDaemons) -> dict[str, tuple[Any, ...]]:
    with Store(f"sqlite:///{d.store_path}") as store:
        out: dict[str, tuple[Any, ...]] = {}
        for addr in ACTORS:
            row = store.sender(key(addr))
            counts = tuple(sum(store.counters(key(addr), name).values())
                           for name in ("messages", "recipients", "sent", "bounced"))
            out[addr] = (row.state if row else None, round(row.score, 3) if row else None,
                         len(store.state_changes(key(addr))), *counts)
        return out


def settle(pf: PostfixInstance, d: ExtrusionDaemons) -> None:
    """Postfix done with everything but held mail, then the store quiet for a while."""
    pf.wait_idle(SETTLE_SECONDS)
    deadline = time.monotonic() + SETTLE_SECONDS
    last, since = _snapshot(d), time.monotonic()
    while time.monotonic() - since < QUIET_SECONDS:
        if time.monotonic() > deadline:
            raise TimeoutError("the store did not settle")
        time.sleep(0.5)
        now = _snapshot(d)
        if now != last:
            last, since = now, time.monotonic()


def replay_states(d: ExtrusionDaemons, log: Path, workdir: Path) -> tuple[dict[str, str],
                                                                        list[dict[str, Any]]]:
    """`extrusion replay --json` with the live scoring settings and a fresh SQLite store:
    each sender's last state, and every object printed."""
    settings = deep_merge(d.base_settings(), SETTINGS)
    settings["store"] = {"url": f"sqlite:///{workdir / 'replay.db'}",
                         "spool_dir": str(workdir / "replay-spool")}
    config = workdir / "replay.toml"
    config.write_text(to_toml(settings))
    proc = subprocess.run(
        [sys.executable, "-m", "extrusion.cli", "replay", "--json", "--config", str(config),
         str(log)], capture_output=True, text=True, timeout=REPLAY_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    last: dict[str, str] = {}
    for row in rows:
        if row["state"] != "misconfigured":
            last[row["sender"]] = row["state"]
    return last, rows


# --- the scenario ------------------------------------------------------------------------------


def test_live_verdicts_agree_with_a_replay_of_the_same_log(
    postfix: PostfixInstance, daemons: ExtrusionDaemons, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    start = postfix.maillog.stat().st_size if postfix.maillog.exists() else 0
    traffic = Traffic()

    normal_customers(postfix, traffic, tag)
    mailing_list(postfix, traffic, tag)
    rejection_daemon(postfix, traffic, tag)
    bounce_relay(postfix, traffic, tag)
    worm(postfix, daemons, traffic, f"w{tag}")

    class Counting:  # the bot's messages go through the same bookkeeping
        def send(self, mail_from: str, rcpts: list[str], **kwargs: Any) -> SendResult:
            return traffic.sent(BOT, postfix.send(mail_from, rcpts, **kwargs))

        def log_text(self) -> str:
            return postfix.log_text()

    run_spam_bot(Counting(), daemons, source=BOT, tag=f"b{tag}", held=postfix.held)
    settle(postfix, daemons)

    # --- the live verdicts ---
    with Store(f"sqlite:///{daemons.store_path}") as store:
        live = {addr: (row.state if (row := store.sender(key(addr))) else "unknown")
                for addr in ACTORS}
        daemon_row = store.sender(key(DAEMON))
        trails = {addr: store.state_changes(key(addr)) for addr in ACTORS}
        rows = {addr: store.messages(key(addr)) for addr in ACTORS}
        counted = {addr: sum(store.counters(key(addr), "messages").values()) for addr in ACTORS}

    assert {a: _live_state(daemons, key(a)) for a in ACTORS} == live  # the operator API's
    assert {a: live[a] for a in (NORMAL_A, NORMAL_B, LIST, RELAY, DAEMON)} == dict.fromkeys(
        (NORMAL_A, NORMAL_B, LIST, RELAY, DAEMON), "ok")
    assert live[BOT] in CONTAINED and live[WORM] in CONTAINED
    # The rejection daemon: misconfigured, never throttled, though it failed 25+ times.
    assert daemon_row is not None
    assert daemon_row.findings["misconfigured"]["rejection_daemon"] is True
    # Its failures are not held against it. The milter is not attached to it (in good
    # standing, conf/postfix/main.cf.snippet's smtpd_milter_maps), so, as in a replay,
    # its robot local part makes a notice an auto-reply only at a domain it sent from
    # before (scoring/recording.py): its first failed notices may count, no more.
    failed = daemon_row.findings.get("failed_recipients", {}).get("count", 0)
    assert failed < DAEMON_NOTICES // 10, daemon_row.findings
    assert all(c.new.value not in CONTAINED for c in trails[DAEMON])

    # The bot's audit trail is one consistent sequence, its score rising with its state.
    bot_trail = trails[BOT]
    shown = [(c.old.value, c.new.value, c.score, c.who) for c in bot_trail]
    assert bot_trail and bot_trail[0].old is State.OK, shown
    for before, after in itertools.pairwise(bot_trail):
        assert after.old == before.new, shown
    peak = max(range(len(bot_trail)), key=lambda i: (bot_trail[i].new.rank, -i))
    for before, after in itertools.pairwise(bot_trail[:peak + 1]):
        assert after.new.rank >= before.new.rank and after.score >= before.score, shown

    # --- the same log lines, replayed ---
    with postfix.maillog.open("rb") as f:
        f.seek(start)
        cut = f.read()
    log = tmp_path / "scenario.log"
    log.write_bytes(cut)
    ours = re.compile(rb"client=\S*\[(127\.0\.0\.13\d)\]")
    assert {m.decode() for m in ours.findall(cut)} == set(ACTORS)
    replayed, objects = replay_states(daemons, log, tmp_path)
    replay_final = {addr: replayed.get(key(addr), "ok") for addr in ACTORS}

    # The log carries what only the live engine saw: a suspect HELO (the policy server's
    # INFO line at end of message) and each recipient refused while rate limited.
    assert replay_final == live, (replay_final, live)
    assert live[BOT] in CONTAINED and live[WORM] in CONTAINED
    assert b"extrusion: suspicious HELO: " in cut
    misconfigured = {o["sender"] for o in objects if o["state"] == "misconfigured"}
    assert misconfigured == {key(DAEMON)}
    good = {key(a) for a in LOG_ONLY}
    assert [o for o in objects if o["sender"] in good and o["state"] in CONTAINED] == []

    # --- hostname unset: every message counted once ---
    queued = {addr: sorted(traffic.queued.get(addr, [])) for addr in ACTORS}
    stored = {addr: sorted(m.queue_id for m in rows[addr] if m.envelope_from or m.rcpt_count)
              for addr in ACTORS}
    assert len({m.mta for addr in ACTORS for m in rows[addr]}) == 1  # one name per host
    for addr in ACTORS:
        assert stored[addr] == queued[addr], (addr, len(stored[addr]), len(queued[addr]))
        assert counted[addr] == len(queued[addr]), (addr, counted[addr], len(queued[addr]))
