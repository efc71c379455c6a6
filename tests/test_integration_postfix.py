"""End to end on a real Postfix: customers over SMTP, `extrusion serve` (milter, policy
server and log feed around one engine) as a real process, the remote side refusing what a
real Internet refuses.

Each scenario gets its own store and daemons (a fresh config) on the session's
Postfix, and its own loopback source address, so its sender key is its own.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
import sqlalchemy as sa

from extrusion.scoring.rows import StoredMessage
from extrusion.scoring.store import Store
from tests.helpers import wait_for
from tests.mta.daemons import ExtrusionDaemons, postfix_daemons  # noqa: F401 (fixture `daemons`)
from tests.postfix_harness import PostfixInstance, SendResult
from tests.smtp_remote import VIRUS_MARKER, RemoteSMTP
from tests.storeview import message_rows

pytestmark = pytest.mark.integration

THROTTLE_ENHANCED = "4.7.1"
FAILURES_BEFORE_THROTTLE = 25  # the issue: throttled before its 25th failed recipient
SETTLE_SECONDS = 30.0  # upper bound for outcomes to reach the engine through the log
CONTAINED = ("throttled", "held", "blocked")
FLUSH_SECONDS = 1.0  # how often the daemons write what they recorded (the default)


def _tag(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def _wait(what: str, check: Callable[[], Any], timeout: float = SETTLE_SECONDS) -> Any:
    return wait_for(what, check, timeout, interval=0.2)


def _state(daemons: ExtrusionDaemons, key: str) -> str:
    info = daemons.sender(key)
    return str(info["state"]) if info else "unknown"


# --- the spam bot, shared with the Sendmail test ---------------------------------------------


class BotMTA(Protocol):
    def send(self, mail_from: str, rcpts: list[str], **kwargs: Any) -> SendResult: ...
    def log_text(self) -> str: ...


@dataclass
class BotRun:
    """What happened to a spam bot's outbreak."""

    sent: list[SendResult] = field(default_factory=list)
    failures_before_throttle: int = -1
    throttle_reply: str = ""
    held_queue_id: str = ""
    quarantined: list[str] = field(default_factory=list)


def bot_failures(log: str, tag: str) -> int:
    """Recipients of the bot that the remote refused for good, as the MTA logged them."""
    return len(re.findall(rf"to=<(?:unknown|greydead)-{tag}-[^>]*>,.* dsn=5\.", log))


def run_spam_bot(mta: Any, daemons: ExtrusionDaemons, *, source: str, tag: str,
                 held: Callable[[], list[str]] | None = None,
                 max_messages: int = 120, pace: float = 0.3) -> BotRun:
    """A bot pumping mail: forged freemail senders, a random HELO, mostly dead recipients.

    Each message goes to 1 dead address, 3 dead addresses behind a greylisting
    MX (their failures come back seconds later, on Postfix's retry) and 1 real
    one. The bot never waits for outcomes. Returns when one of its messages is
    held (quarantined), or fails the test after `max_messages`.
    """
    held = held or (lambda: mta.queue(quarantined=True))
    run = BotRun()
    for i in range(max_messages):
        rcpts = [f"unknown-{tag}-{i}@remote.example",
                 *(f"greydead-{tag}-{i}-{j}@remote.example" for j in range(3)),
                 f"victim-{tag}-{i}@remote.example"]
        result = mta.send(f"{uuid.uuid4().hex[:10]}@freemail.example", rcpts,
                          helo=uuid.uuid4().hex[:7], source=source,
                          subject="cheap meds", body="buy now\n")
        run.sent.append(result)
        # Throttled at MAIL (the message budget) or at RCPT (the recipient budget).
        deferred = [text for code, text in (result.mail_reply, *result.rcpt_replies.values())
                    if 400 <= code < 500 and text.startswith(THROTTLE_ENHANCED)]
        if deferred and not run.throttle_reply:
            run.failures_before_throttle = bot_failures(mta.log_text(), tag)
            run.throttle_reply = deferred[0]
        if (not run.throttle_reply
                and bot_failures(mta.log_text(), tag) > 3 * FAILURES_BEFORE_THROTTLE):
            break  # far past the point where it had to be throttled: no use going on
        if result.queue_id is not None and run.throttle_reply:
            quarantined = held()
            if result.queue_id in quarantined:
                run.held_queue_id = result.queue_id
                run.quarantined = quarantined
                return run
        time.sleep(pace)
    pytest.fail(f"bot not held after {len(run.sent)} messages: throttle={run.throttle_reply!r} "
                f"failures={bot_failures(mta.log_text(), tag)} "
                f"state={_state(daemons, 'ip:' + source)}")


def reported_queue_ids(daemons: ExtrusionDaemons, key: str) -> set[str]:
    """Queue ids of the sender's messages in `extrusion report --format json`."""
    out = daemons.cli("report", "--sender", key, "--format", "json").stdout
    return {str(m["queue_id"]) for s in json.loads(out)["senders"]
            for m in s.get("messages", [])}


# --- scenarios -----------------------------------------------------------------------------


# The milter on every session (the snippet's socketmap unanswered: Postfix falls back to
# smtpd_milters), or only on clients under attention (the shipped smtpd_milter_maps).
ALWAYS = {"milter": {"attach": "always"}}
WATCHED = {"milter": {"attach": "watched"}}


@pytest.mark.parametrize("daemons", [ALWAYS, WATCHED], indirect=True, ids=["always", "watched"])
def test_a_normal_customer_is_delivered_untouched(
    postfix: PostfixInstance, daemons: ExtrusionDaemons, remote_smtp: RemoteSMTP
) -> None:
    tag = _tag("n")
    key = "ip:127.0.0.10"
    for i in range(5):
        rcpts = [f"friend-{tag}-{i}@remote.example", f"colleague-{tag}-{i}@other.example"]
        if i == 4:
            rcpts.append(f"unknown-{tag}-typo@remote.example")  # one typo in a week
        result = postfix.send(f"anna@customer-{tag}.example", rcpts, source="127.0.0.10",
                              helo=f"pc-{tag}.customer.example")
        assert [code for code, _ in result.rcpt_replies.values()] == [250] * len(rcpts)
        assert result.queue_id is not None
        final = postfix.wait_removed(result.queue_id)
        assert {o.status for r, o in final.items() if "unknown" not in r} == {"sent"}
    # Her five messages reached the remote side; Postfix's bounce for the typo
    # (null sender, to anna) may have too, and is not hers.
    delivered = [m for m in remote_smtp.messages if tag in " ".join(m.rcpts) and m.mail_from]
    assert len(delivered) == 5
    _wait("the customer's outcomes in the store", lambda: daemons.sender(key))
    assert _state(daemons, key) == "ok"
    assert postfix.held() == []
    # The milter and the log feed both reported each message; each counts once.
    with Store(f"sqlite:///{daemons.store_path}") as store:
        def all_outcomes() -> list[StoredMessage]:
            msgs = [m for m in store.messages(key) if tag in m.envelope_from]
            done = len(msgs) == 5 and all(
                {r.recipient for r in m.recipients if r.status != "queued"}
                == {r.recipient for r in m.recipients} for m in msgs)
            return msgs if done else []

        msgs = _wait("every outcome of her five messages in the store", all_outcomes)
        time.sleep(2 * FLUSH_SECONDS)  # the log feed's own reports of them, if any were late
        msgs = store.messages(key)
        # The HELO on the rows is the milter's; it is not attached to her when it
        # attaches only to clients under attention (the policy server judged her HELO).
        attached = daemons.settings["milter"]["attach"] == "always"
        helo = f"pc-{tag}.customer.example" if attached else ""
        assert all(m.helo == helo for m in msgs)
        # One row per recipient: its outcome, in the place of the "queued" row.
        rows = [(m.queue_id, r.recipient) for m in msgs for r in m.recipients]
        assert len(rows) == len(set(rows)) == 11
        assert not [r for m in msgs for r in m.recipients if r.status == "queued"]
        assert sum(store.counters(key, "messages").values()) == 5
        assert sum(store.counters(key, "recipients").values()) == 11


def test_a_mailing_list_post_with_ten_percent_dead_is_untouched(
    postfix: PostfixInstance, daemons: ExtrusionDaemons
) -> None:
    tag = _tag("l")
    key = "ip:127.0.0.11"
    rcpts = [(f"unknown-{tag}-{i}" if i % 10 == 0 else f"member-{tag}-{i}") + "@remote.example"
             for i in range(500)]
    result = postfix.send(f"news@list-{tag}.example", rcpts, source="127.0.0.11",
                          helo="lists.customer.example",
                          headers={"List-Id": f"<news.{tag}.customer.example>",
                                   "List-Unsubscribe": "<mailto:leave@customer.example>",
                                   "Precedence": "list"})
    assert len(result.accepted) == 500
    assert result.queue_id is not None
    final = postfix.wait_removed(result.queue_id, timeout=60)
    assert sum(o.status == "bounced" for o in final.values()) == 50
    assert sum(o.status == "sent" for o in final.values()) == 450

    # Every outcome in the store, not a guessed pause: the state is judged on all 500.
    url = f"sqlite:///{daemons.store_path}"

    def judged() -> bool:
        rows = [m for m in message_rows(url) if m["sender"] == key]
        return sum(m["delivered"] + m["failed"] for m in rows) == 500 and all(
            r.status != "queued" for m in rows for r in m["recipients"])
    _wait("the list's 500 outcomes in the store", judged)
    assert _state(daemons, key) not in CONTAINED
    follow_up = postfix.send(f"news@list-{tag}.example", [f"member-{tag}-x@remote.example"],
                             source="127.0.0.11", helo="lists.customer.example")
    assert follow_up.accepted and follow_up.queue_id not in postfix.held()


def test_a_spam_bot_is_throttled_then_held_and_released(
    postfix: PostfixInstance, daemons: ExtrusionDaemons, remote_smtp: RemoteSMTP
) -> None:
    tag = _tag("b")
    key = "ip:127.0.0.66"
    run = run_spam_bot(postfix, daemons, source="127.0.0.66", tag=tag, held=postfix.held)
    assert 0 <= run.failures_before_throttle < FAILURES_BEFORE_THROTTLE
    assert run.throttle_reply.startswith(THROTTLE_ENHANCED)
    held_entry = next(m for m in postfix.queue() if m["queue_id"] == run.held_queue_id)
    assert held_entry["queue_name"] == "hold"
    assert _state(daemons, key) == "held"
    assert remote_smtp.received_by(f"victim-{tag}-{len(run.sent) - 1}@remote.example") == []

    # The abuse desk reads the report first; the held message is in it once both
    # daemons have written what they know to the store.
    _wait("the held message in the abuse report",
          lambda: run.held_queue_id in reported_queue_ids(daemons, key))
    done = daemons.cli("release", key, "--reason", "customer cleaned the PC", "--who", "abuse")
    assert "held -> " in done.stdout
    _wait("the held message released", lambda: run.held_queue_id not in postfix.held())
    victim = f"victim-{tag}-{len(run.sent) - 1}@remote.example"
    _wait("the released message delivered", lambda: remote_smtp.received_by(victim))


def test_a_worm_with_a_broken_helo_refused_as_a_virus_is_contained(
    postfix: PostfixInstance, daemons: ExtrusionDaemons
) -> None:
    tag = _tag("w")
    key = "ip:127.0.0.67"
    book = [f"contact-{tag}-{i}@remote.example" for i in range(40)]
    refused = 0
    for i in range(0, len(book), 4):
        result = postfix.send(f"victim-{tag}@customer.example", book[i:i + 4],
                              helo="JOHNS-PC", source="127.0.0.67",
                              subject="Re: your document", body=f"see attachment {VIRUS_MARKER}\n")
        if not result.accepted or result.queue_id in postfix.held():
            break
        assert result.queue_id is not None
        final = postfix.wait_removed(result.queue_id)
        assert {o.dsn for o in final.values()} == {"5.7.0"}  # refused remotely as a virus
        refused += len(final)
        if _state(daemons, key) in CONTAINED:
            break
        time.sleep(0.3)
    _wait("the worm contained", lambda: _state(daemons, key) in CONTAINED)
    assert refused < len(book)

    def audit_says_virus() -> bool:  # the audit trail is written behind the state change
        info = daemons.sender(key)
        return info is not None and any("virus" in e["reason"] for e in info["audit"])

    # the audit trail says why: the remote sites' virus refusals
    _wait("the virus refusals in the audit trail", audit_says_virus, timeout=10)


ALLOW_LISTED = {"overrides": [{"match": "ip:127.0.0.12", "action": "allow",
                               "reason": "newsletter host, contract 4411"}]}


@pytest.mark.parametrize("daemons", [ALLOW_LISTED], indirect=True)
def test_an_allow_listed_customer_is_never_limited(
    postfix: PostfixInstance, daemons: ExtrusionDaemons
) -> None:
    tag = _tag("a")
    for i in range(12):
        rcpts = [f"unknown-{tag}-{i}-{j}@remote.example" for j in range(4)]
        rcpts.append(f"reader-{tag}-{i}@remote.example")
        result = postfix.send(f"send@news-{tag}.example", rcpts, source="127.0.0.12",
                              helo="xk3j9q")
        assert [code for code, _ in result.rcpt_replies.values()] == [250] * 5
        assert result.queue_id is not None
        assert result.queue_id not in postfix.held()
        postfix.wait_removed(result.queue_id)
    assert postfix.held() == []


def test_extrusion_stopped_mid_test_fails_open_and_catches_up(
    postfix: PostfixInstance, daemons: ExtrusionDaemons, remote_smtp: RemoteSMTP
) -> None:
    tag = _tag("s")
    key = "ip:127.0.0.13"

    def send(i: int, dead: int) -> SendResult:
        rcpts = [f"unknown-{tag}-{i}-{j}@remote.example" for j in range(dead)]
        rcpts.append(f"ok-{tag}-{i}@remote.example")
        return postfix.send(f"shop@store-{tag}.example", rcpts, source="127.0.0.13",
                            helo=f"mail.store-{tag}.example")

    first = send(0, 0)
    assert first.queue_id is not None
    postfix.wait_removed(first.queue_id)
    _wait("the customer known to extrusion", lambda: daemons.sender(key))

    assert daemons.stop() == {"serve": 0}
    during = [send(i, 5) for i in range(1, 6)]  # 25 failures while extrusion is down
    for result in during:
        assert result.queue_id is not None, "Postfix must accept mail with extrusion down"
        postfix.wait_removed(result.queue_id)
        assert remote_smtp.received_by(f"ok-{tag}-{during.index(result) + 1}@remote.example")

    daemons.start()
    _wait("outcomes logged during the outage read on restart",
          lambda: _state(daemons, key) in CONTAINED)


SHIPPED_IDENTITY = {"general": {"hostname": ""}}  # conf/extrusion.toml leaves it unset


# Both report only where the milter is attached: here, everywhere.
@pytest.mark.parametrize("daemons", [{**SHIPPED_IDENTITY, **ALWAYS}], indirect=True)
def test_with_the_hostname_unset_each_message_is_counted_once(
    postfix: PostfixInstance, daemons: ExtrusionDaemons
) -> None:
    """The milter and the log feed both report every message; they must name its MTA alike
    (Postfix's log writes myhostname's first label, not necessarily the machine's name)."""
    tag = _tag("i")
    key = "ip:127.0.0.15"
    sent = [postfix.send(f"office@firm-{tag}.example",
                         [f"a-{tag}-{i}@remote.example", f"b-{tag}-{i}@remote.example"],
                         source="127.0.0.15", helo=f"mail.firm-{tag}.example")
            for i in range(4)]
    queue_ids = {r.queue_id for r in sent}
    assert None not in queue_ids and len(queue_ids) == 4
    for qid in queue_ids:
        postfix.wait_removed(str(qid))
    url = f"sqlite:///{daemons.store_path}"

    def mine() -> list[dict[str, Any]]:
        return [m for m in message_rows(url) if m["sender"] == key]

    def delivered() -> bool:
        return sum(1 for m in mine() for r in m["recipients"] if r.status == "sent") == 8

    _wait("the deliveries in the store", delivered)
    time.sleep(2 * FLUSH_SECONDS)  # a second report of a message would land by now
    rows = [(m["mta"], m["queue_id"]) for m in mine()]
    db = sa.create_engine(url)
    try:
        with db.connect() as c:
            counted = c.execute(sa.text(
                "SELECT c.name, sum(c.value) FROM counters c JOIN names n ON n.id = c.sender_id "
                "WHERE n.name = :k AND c.name IN ('messages', 'recipients') GROUP BY c.name"),
                {"k": key}).all()
    finally:
        db.dispose()
    statuses = [r.status for m in mine() for r in m["recipients"]]
    assert sorted(q for _, q in rows) == sorted(str(q) for q in queue_ids)
    assert len({mta for mta, _ in rows}) == 1
    assert dict(counted) == {"messages": 4.0, "recipients": 8.0}
    assert statuses == ["sent"] * 8  # one line per recipient, its outcome in place
    assert "are not this host's" not in daemons.output("serve")


def test_a_two_thousand_member_list_posting_three_times_an_hour_is_never_refused(
    postfix: PostfixInstance, daemons: ExtrusionDaemons
) -> None:
    """The shipped limits protect, the evidence decides: a list with nothing against it
    posts three times within minutes, each post to 2,000 members (in two messages, as
    Postfix takes at most smtpd_recipient_limit = 1000 recipients per message), and every
    RCPT, MAIL and DATA is accepted. (With the limits shipped before, Postfix dropped the
    second post's session after its 20th refusal.)"""
    tag = _tag("m")
    key = "ip:127.0.0.16"
    members = [(f"unknown-{tag}-{i}" if i % 12 == 0 else f"member-{tag}-{i}")
               + "@remote.example" for i in range(2000)]
    refused: list[tuple[int, str]] = []
    queued: list[str] = []
    for post in range(3):
        for chunk in (members[:1000], members[1000:]):
            result = postfix.send(f"news-{post}@list-{tag}.example", chunk, source="127.0.0.16",
                                  helo="lists.customer.example",
                                  headers={"List-Id": f"<news.{tag}.customer.example>",
                                           "Precedence": "list"})
            refused += [reply for reply in (result.mail_reply, *result.rcpt_replies.values(),
                                            result.data_reply or (250, ""))
                        if reply[0] >= 400]
            if result.queue_id is not None:
                queued.append(result.queue_id)
        if post == 0:  # the first post's outcomes are back before the next ones
            for qid in queued:
                postfix.wait_removed(qid, timeout=120)
    assert refused == []
    assert len(queued) == 6
    for qid in queued:
        postfix.wait_removed(qid, timeout=120)
    assert _state(daemons, key) == "ok"
