"""A day at the smarthost: seven kinds of sender, fed to the engine as events in time order.

Every message first asks `decide()` at RCPT, as the policy daemon would; what
is refused or held never reaches the Internet and produces no outcomes. Only
the spam bot and the mass-mailing worm may end up throttled or held; the
rejection daemon is reported as misconfigured; the bot is throttled before
its 25th failed recipient.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from extrusion.config import from_dict
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import (
    Action,
    Connection,
    Headers,
    Outcome,
    Stage,
    State,
    StateChange,
    Status,
    Submission,
)
from extrusion.scoring.store import Store

T0 = 1_700_000_000.0
DAY = 86400.0
SEED = 20070519

UNKNOWN_USER = ("5.1.1", "550 5.1.1 <{r}>: Recipient address rejected: User unknown")
NO_DOMAIN = ("5.4.4", "Host or domain name not found. Name service error for name={d} type=MX")
SPAM = ("5.7.1", "550 5.7.1 Message rejected as spam by Content Filtering")
VIRUS = ("5.7.1", "554 5.7.1 The message was rejected because it contains prohibited "
                  "virus or spam content")
OK_REPLY = "250 2.0.0 Ok: queued as 4F2A"

CONSUMER = "sasl:anna@example.net"
BUSINESS = "customer:acme"
LIST_HOST = "sasl:lists@example.org"
DAEMON = "ip:192.0.2.80"
RELAY = "ip:192.0.2.90"
BOT = "ip:198.51.100.7"
WORM = "ip:198.51.100.99"
GOOD = (CONSUMER, BUSINESS, LIST_HOST, DAEMON, RELAY)


@dataclass(order=True)
class Ev:
    time: float
    seq: int
    run: Callable[[], None] = field(compare=False)


@dataclass
class Message:
    sender: str
    client: str
    env_from: str
    rcpts: list[str]
    fate: Callable[[int, str], tuple[Status, str, str]]  # (index, rcpt) -> status, dsn, reply
    helo: str = "mail.example.net"
    headers: Headers = field(default_factory=Headers)
    sasl: str = ""


def delivered(_i: int, _r: str) -> tuple[Status, str, str]:
    return Status.SENT, "2.0.0", OK_REPLY


def bounce(kind: tuple[str, str], r: str) -> tuple[Status, str, str]:
    dsn, text = kind
    return Status.BOUNCED, dsn, text.format(r=r, d=r.split("@")[1])


class Day:
    """Builds the day's traffic, then plays it through one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.rng = random.Random(SEED)
        self.events: list[Ev] = []
        self.seq = 0
        self.qseq = 0
        self.refused: dict[str, list[str]] = {}
        self.failed_outcomes: dict[str, int] = {}
        self.failures_before_throttle: dict[str, int] = {}
        engine.add_listener(self.heard)

    def heard(self, change: StateChange) -> None:
        if change.new.rank >= State.THROTTLED.rank:
            self.failures_before_throttle.setdefault(
                change.sender, self.failed_outcomes.get(change.sender, 0))

    def at(self, t: float, run: Callable[[], None]) -> None:
        self.seq += 1
        self.events.append(Ev(t, self.seq, run))

    def message(self, t: float, m: Message) -> None:
        self.at(t, lambda: self._submit(t, m))

    def _submit(self, t: float, m: Message) -> None:
        e = self.engine
        e.connection(Connection(time=t, client_addr=m.client, helos=(m.helo,), sasl_user=m.sasl))
        d = e.decide(m.sender, Stage.RCPT, len(m.rcpts), t)
        if d.action is not Action.CONTINUE:
            self.refused.setdefault(m.sender, []).append(f"{d.action.value}: {d.text}")
            return  # tempfailed, refused or held: nothing goes out
        self.qseq += 1
        qid = f"{self.qseq:010X}"
        e.submission(Submission(
            time=t, sender=m.sender, queue_id=qid, envelope_from=m.env_from,
            recipients=tuple(m.rcpts), size=2206, client_addr=m.client, helos=(m.helo,),
            headers=m.headers,
        ))
        for i, r in enumerate(m.rcpts):
            status, dsn, reply = m.fate(i, r)
            when = t + self.rng.uniform(1.0, 90.0)
            # Only the queue id: the live log feed often knows nothing more.
            self.at(when, lambda w=when, q=qid, r=r, s=status, dsn=dsn, rep=reply, snd=m.sender:
                    self._outcome(w, q, r, s, dsn, rep, snd))

    def _outcome(self, t: float, qid: str, r: str, status: Status, dsn: str, reply: str,
                 sender: str) -> None:
        if status is not Status.SENT:
            self.failed_outcomes[sender] = self.failed_outcomes.get(sender, 0) + 1
        self.engine.outcome(Outcome(time=t, queue_id=qid, recipient=r, status=status, dsn=dsn,
                                    reply=reply))

    def play(self) -> None:
        self.events.sort()
        i = 0
        while i < len(self.events):  # outcomes are appended while playing
            ev = self.events[i]
            ev.run()
            i += 1
            if i % 500 == 0:
                self.engine.flush()
            self.events[i:] = sorted(self.events[i:])
        self.engine.flush()

    # --- the seven senders --------------------------------------------------------------

    def consumer(self) -> None:
        """A few personal mails a day from a laptop with a bare HELO; one old address."""
        for n in range(12):
            t = T0 + 3600 + n * 5400 + self.rng.uniform(0, 600)
            rcpts = [f"friend{self.rng.randrange(30)}@gmail.com"
                     for _ in range(self.rng.randint(1, 3))]
            old = n == 4
            self.message(t, Message(
                CONSUMER, "203.0.113.10", "anna@example.net", rcpts, sasl="anna@example.net",
                helo="ANNA-LAPTOP",
                fate=lambda i, r, old=old: bounce(UNKNOWN_USER, r) if old and i == 0
                else delivered(i, r),
            ))

    def business(self) -> None:
        """Ordinary office mail, then a mailshot to 800 customers, 4 % of them stale."""
        for n in range(40):
            t = T0 + 8 * 3600 + n * 600
            self.message(t, Message(
                BUSINESS, "10.20.0.5", f"staff{n % 7}@acme.example",
                [f"client{self.rng.randrange(500)}@example.com"], helo="mail.acme.example",
                fate=delivered,
            ))
        rcpts = [f"customer{i}@shop{i % 40}.example" for i in range(800)]
        self.message(T0 + 10 * 3600, Message(
            BUSINESS, "10.20.0.5", "news@acme.example", rcpts, helo="mail.acme.example",
            headers=Headers(list_unsubscribe="<mailto:unsubscribe@acme.example>"),
            fate=lambda i, r: bounce(UNKNOWN_USER, r) if i % 25 == 0 else delivered(i, r),
        ))

    def list_host(self) -> None:
        """Six posts to one 300-member list; 8 % of the members bounce every time."""
        members = [f"member{i}@site{i % 60}.example" for i in range(300)]
        for n in range(6):
            self.message(T0 + 2 * 3600 + n * 3 * 3600, Message(
                LIST_HOST, "192.0.2.50", "users-bounces@lists.example.org", members,
                sasl="lists@example.org", helo="lists.example.org",
                headers=Headers(list_id="Users <users.lists.example.org>",
                                list_unsubscribe="<mailto:users-leave@lists.example.org>"),
                fate=lambda i, r: bounce(UNKNOWN_USER, r) if i % 12 == 0 else delivered(i, r),
            ))

    def rejection_daemon(self) -> None:
        """Answers spam with forged senders (not with <>): most replies fail."""
        for n in range(80):
            r = f"forged{n}@{self.rng.choice(['example.com', 'example.org', 'example.biz'])}"
            self.message(T0 + 3600 + n * 400, Message(
                DAEMON, "192.0.2.80", "postmaster@corp.example", [r], helo="mx.corp.example",
                headers=Headers(auto_submitted="auto-replied"),
                fate=lambda i, r, n=n: bounce(UNKNOWN_USER, r) if n % 7 else delivered(i, r),
            ))

    def bounce_relay(self) -> None:
        """A customer's mail server relaying bounces (<>) for its users: many fail."""
        for n in range(120):
            r = f"spoofed{n}@example.net"
            self.message(T0 + 1800 + n * 300, Message(
                RELAY, "192.0.2.90", "", [r], helo="smtp.relay.example",
                fate=lambda i, r, n=n: bounce(UNKNOWN_USER, r) if n % 4 else delivered(i, r),
            ))

    def spam_bot(self) -> None:
        """From mid-morning: a burst to invented addresses, mostly refused."""
        start = T0 + 11 * 3600
        for n in range(150):
            t = start + n * 20 + self.rng.uniform(0, 5)
            rcpts = [f"{self.rng.choice(['info', 'sales', 'j.smith', 'admin'])}{n}{k}@"
                     f"{self.rng.choice(['example.com', 'example.net', 'nx-domain.example'])}"
                     for k in range(self.rng.randint(1, 4))]

            def fate(i: int, r: str) -> tuple[Status, str, str]:
                if r.endswith("nx-domain.example"):
                    return bounce(NO_DOMAIN, r)
                roll = self.rng.random()
                if roll < 0.6:
                    return bounce(UNKNOWN_USER, r)
                if roll < 0.8:
                    return bounce(SPAM, r)
                return delivered(i, r)

            self.message(t, Message(BOT, "198.51.100.7", f"promo{n}@cheap-meds.example", rcpts,
                                    helo="mail.cheap-meds.example", fate=fate))

    def worm(self) -> None:
        """Mails itself to an address book (valid addresses); remote sites reject the virus."""
        start = T0 + 14 * 3600
        book = [f"contact{i}@example.com" for i in range(60)]
        for n in range(30):
            rcpts = book[n * 2:n * 2 + 2]
            label = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
            self.message(start + n * 45, Message(
                WORM, "198.51.100.99", f"victim{n}@usa.net", rcpts, helo=f"{label}.usa.net",
                fate=lambda i, r: bounce(VIRUS, r) if self.rng.random() < 0.4
                else delivered(i, r),
            ))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    cfg = from_dict({
        "general": {"hostname": "smarthost1", "own_domains": ["example.net"]},
        "store": {"url": f"sqlite:///{tmp_path / 'x.db'}", "spool_dir": str(tmp_path / "sp")},
        "customers": [{"name": "acme", "limits": "business", "networks": ["10.20.0.0/16"]}],
    })
    store = Store(cfg.store.url)
    clock_time = [T0]
    e = Engine(cfg, store, lambda: clock_time[0])
    yield e
    e.close()
    store.close()


def test_a_day_at_the_smarthost(engine: Engine) -> None:
    day = Day(engine)
    for actor in (day.consumer, day.business, day.list_host, day.rejection_daemon,
                  day.bounce_relay, day.spam_bot, day.worm):
        actor()
    day.play()
    end = T0 + DAY
    state = {s: engine.decide(s, Stage.CONNECT, now=end - 6 * 3600, count=False).state
             for s in (*GOOD, BOT, WORM)}
    store = engine.store

    # Only the bot and the worm were ever throttled or held.
    for sender in GOOD:
        assert state[sender].rank < State.THROTTLED.rank, (sender, state[sender])
        assert sender not in day.refused, (sender, day.refused.get(sender))
        trail = store.state_changes(sender)
        assert all(c.new.rank < State.THROTTLED.rank for c in trail), (sender, trail)
    for sender in (BOT, WORM):
        peak = max(c.new.rank for c in store.state_changes(sender))
        assert peak >= State.THROTTLED.rank, sender
        assert day.refused.get(sender), f"{sender} was never stopped"

    # The bot was throttled before its 25th failed recipient.
    assert day.failures_before_throttle[BOT] < 25

    # The worm was caught by its HELO at once and held for its virus rejections.
    first = next(c for c in store.state_changes(WORM) if c.new.rank >= State.THROTTLED.rank)
    assert first.reason == "suspicious HELO"
    held = next(c for c in store.state_changes(WORM) if c.new is State.HELD)
    findings = held.evidence["findings"]
    assert isinstance(findings, dict)
    assert "virus_rejections" in findings and "helo_anomalies" in findings

    # The rejection daemon is reported as misconfigured, not as a spammer.
    daemon = store.sender(DAEMON)
    assert daemon is not None and daemon.findings["misconfigured"]["rejection_daemon"] is True
    assert "failed_recipients" not in daemon.findings

    # The list host's and the mailshot's failures were discounted, not counted.
    for sender in (LIST_HOST, BUSINESS):
        row = store.sender(sender)
        assert row is not None and row.findings["list_failures_discounted"]["discounted"] > 0
    # Bounces never counted.
    relay = store.sender(RELAY)
    assert relay is None or "failed_recipients" not in relay.findings
