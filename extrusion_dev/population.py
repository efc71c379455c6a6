"""A smarthost's whole customer population as a Postfix log, with the truth about each one.

For `benchmarks/detection.py` and its test: how many infected machines the
engine contains, how fast, and which legitimate customers it wrongly
throttles. Every actor draws its own parameters from a seeded RNG:

- consumers: dynamic addresses (a new lease each day), SASL or plain port 25,
  mail-client HELOs (a machine name without a dot, a private address
  literal, a dotted name), a small address book, the occasional dead
  recipient, greylisting and full mailbox;
- businesses: static addresses, office hours, and some send mailshots of
  30–400 recipients with 5–12 % dead addresses, either as a mail merge (one
  message per recipient) or as one BCC message;
- mailing lists of 200–3,000 members (a fixed share dead) posting a few times
  a day, each post sent in chunks;
- bounce relays: a customer's server relaying its bounces (null sender) to
  often forged addresses, beside its own mail;
- rejection daemons: a customer's server answering forged spam with
  "Undeliverable" notices from postmaster@ (mailer-daemon@, noreply@,
  administrator@) its own domain, one recipient each, in clusters, 60–95 %
  failing, beside its own mail;
- spam bots: a consumer's machine whose owner keeps sending with SASL while
  the bot sends unauthenticated on port 25 from the same address, with
  forged freemail senders, HELOs in one of several styles (a random label
  under the forged domain, the domain itself, a fixed word, random, the
  client's own rDNS), bursts of 100–3,000 messages an hour with pauses, and
  now and then a recipient domain the smarthost itself refuses (NOQUEUE);
- worms: an infected consumer machine with a broken HELO (no dot), one
  harvested recipient per message, many refused as viruses, active only
  while the machine is on.

Lines are written by `extrusion_dev.generate.LogWriter` (Postfix 3 shapes,
RFC 3339 stamps so that no year has to be guessed). A message whose HELO
extrusion finds suspect gets the line Postfix writes for the policy server's
INFO answer at END-OF-MESSAGE, judged by the engine's own HELO judgement
(`extrusion.scoring.judge.helo_note`), so the generator and a live policy
server agree by construction; a clean HELO gets no line, as live.
Deterministic for a seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from extrusion.keys import client_key
from extrusion.scoring import judge
from extrusion_dev.generate import Client, LogWriter

DAY = 86400.0
HOUR = 3600.0
# 2025-03-03 00:00:00 UTC, a Monday: a fixed start keeps the log the same for a seed.
DEFAULT_START = 1740960000.0

CONSUMER, BUSINESS, LIST, BOUNCE_RELAY, REJECTION_DAEMON = (
    "consumer", "business", "list", "bounce_relay", "rejection_daemon")
SPAM_BOT, WORM = "spam_bot", "worm"
LEGITIMATE = (CONSUMER, BUSINESS, LIST, BOUNCE_RELAY, REJECTION_DAEMON)
INFECTED = (SPAM_BOT, WORM)
# Among 2,000 customers (the population); scaled, at least one of each.
PER_2000 = {LIST: 40, BOUNCE_RELAY: 20, REJECTION_DAEMON: 20, SPAM_BOT: 30, WORM: 10}
BUSINESS_SHARE = 0.25  # of the customers that are neither special nor infected

FREEMAIL = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com", "usa.net",
            "mail.ru", "gmx.net", "web.de", "yandex.ru")
WORLD = ("example.org", "example.net", "gmail.com", "yahoo.com", "outlook.com", "web.de",
         "orange.fr", "libero.it", "t-online.de", "comcast.net", "hinet.net", "free.fr",
         "btinternet.com", "shaw.ca", "bigpond.com", "uol.com.br", "naver.com")
ISP_DOMAIN = "isp.example"
ROBOT_LOCALS = ("postmaster", "mailer-daemon", "noreply", "administrator")
BOT_WORDS = ("localhost", "user", "ylmf-pc", "windows", "mail", "smtp")
HELO_STYLES = ("under", "domain", "word", "random", "rdns")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class BadMessage:
    """One message of an infected machine: when, under which key, how many got out."""

    time: float
    key: str
    escaped: int  # recipients delivered, or greylisted and then delivered


@dataclass
class Actor:
    name: str
    kind: str
    keys: set[str] = field(default_factory=set)  # every key its mail came under
    bad_keys: set[str] = field(default_factory=set)  # keys that carried bad mail
    bad: list[BadMessage] = field(default_factory=list)
    messages: int = 0


@dataclass
class Population:
    """The truth about a generated log."""

    start: float
    end: float
    actors: list[Actor] = field(default_factory=list)
    # Final outcome of every recipient per sender key, (time, delivered), in log order:
    # what a rule computed directly on the log sees.
    outcomes: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    lines: int = 0
    messages: int = 0

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.actors:
            counts[a.kind] = counts.get(a.kind, 0) + 1
        return counts

    def summary(self) -> dict[str, object]:
        """The truth as JSON-ready data (outcomes left out: they are the log itself)."""
        return {
            "start": self.start, "end": self.end, "lines": self.lines,
            "messages": self.messages,
            "actors": [
                {"name": a.name, "kind": a.kind, "keys": sorted(a.keys),
                 "bad_keys": sorted(a.bad_keys), "messages": a.messages,
                 "bad": [[m.time, m.key, m.escaped] for m in a.bad]}
                for a in self.actors
            ],
        }


class _Builder:
    """Holds the writer, the address pools and the truth while actors are written."""

    def __init__(self, seed: int, start: float, days: float, host: str) -> None:
        self.master = random.Random(seed)
        self.w = LogWriter(self.master.getrandbits(64), host, True, helo_note=helo_note)
        self.start, self.end = start, start + days * DAY
        self.days = max(1, math.ceil(days))
        self.pop = Population(start=self.start, end=self.end)
        self.used: set[str] = set()

    def rng(self) -> random.Random:
        return random.Random(self.master.getrandbits(64))

    def address(self, r: random.Random, dynamic: bool) -> str:
        while True:
            a = (f"100.{r.randint(64, 127)}.{r.randint(0, 255)}.{r.randint(1, 254)}" if dynamic
                 else f"81.{r.randint(16, 31)}.{r.randint(0, 255)}.{r.randint(1, 254)}")
            if a not in self.used:
                self.used.add(a)
                return a

    def send(self, actor: Actor, t: float, c: Client, rcpts: list[str], fates: list[str],
             envelope_from: str | None = None, bad: bool = False) -> None:
        if not self.start <= t < self.end:
            return
        key = client_key(c.addr, c.sasl)
        finals = self.w.message(t, c, rcpts, fates, envelope_from=envelope_from)
        self.pop.outcomes.setdefault(key, []).extend(finals)
        actor.keys.add(key)
        actor.messages += 1
        self.pop.messages += 1
        if bad:
            actor.bad_keys.add(key)
            actor.bad.append(BadMessage(t, key, sum(ok for _t, ok in finals)))


def helo_note(c: Client, envelope_from: str) -> str:
    """What the policy server's INFO line names for this message's HELO ("" for a clean
    one): the engine's `helo_note()` with the shipped config (no own domains)."""
    return judge.helo_note((c.helo,), c.addr, c.name, envelope_from, ())


def _refused_at_rcpt(b: _Builder, t: float, c: Client, envelope_from: str, rcpt: str) -> None:
    """The smarthost's own refusal of a recipient whose domain does not resolve
    (`reject_unknown_recipient_domain`): a NOQUEUE line, no message."""
    if b.start <= t < b.end:
        b.w.emit(t, f"postfix/{c.service}", b.w.pid(),
                 f"NOQUEUE: reject: RCPT from {c.name}[{c.addr}]: 450 4.1.2 <{rcpt}>: Recipient "
                 f"address rejected: Domain not found; from=<{envelope_from}> to=<{rcpt}> "
                 f"proto=ESMTP helo=<{c.helo}>")


def _rdns(addr: str) -> str:
    return "dyn-" + addr.replace(".", "-") + ".pool." + ISP_DOMAIN


def _local(r: random.Random) -> str:
    first = ("anna", "bob", "carl", "dora", "emil", "fred", "gina", "hugo", "ines", "jan",
             "kai", "lena", "mia", "nils", "olga", "paul", "rita", "sven", "tina", "vera")
    return f"{r.choice(first)}.{r.choice(first)}{r.randint(1, 99)}"


def _word(r: random.Random, lo: int, hi: int) -> str:
    return "".join(r.choice(LETTERS) for _ in range(r.randint(lo, hi)))


def _fate(r: random.Random, dead: float, grey: float = 0.03) -> str:
    x = r.random()
    if x < dead:
        return r.choice(("unknown", "unknown", "unknown", "nodomain", "full"))
    return "grey" if x < dead + grey else "sent"


def _times(r: random.Random, b: _Builder, per_day: float, hours: tuple[int, int]) -> list[float]:
    """Moments in the active hours of each day, about `per_day` a day (Poisson)."""
    out: list[float] = []
    for d in range(b.days):
        n = _poisson(r, per_day)
        out += [b.start + d * DAY + r.uniform(hours[0], hours[1]) * HOUR for _ in range(n)]
    return sorted(out)


def _poisson(r: random.Random, mean: float) -> int:
    if mean > 30:
        return max(0, round(r.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, r.random()
    while p > limit:
        k += 1
        p *= r.random()
    return k


class _Consumer:
    """A home customer: the owner's own mail, on a new dynamic address every day."""

    def __init__(self, b: _Builder, actor: Actor, r: random.Random, sasl: bool) -> None:
        self.b, self.actor, self.r = b, actor, r
        me = _local(r)
        dom = r.choice(FREEMAIL) if r.random() < 0.3 else ISP_DOMAIN
        self.mail_from = f"{me}@{dom}"
        self.sasl = f"{me}@{ISP_DOMAIN}" if sasl else ""
        self.leases = [b.address(r, dynamic=True) for _ in range(b.days)]
        style = r.random()
        self.helo = (f"DESKTOP-{_word(r, 7, 7).upper()}" if style < 0.45
                     else f"[192.168.{r.randint(0, 2)}.{r.randint(2, 200)}]" if style < 0.8
                     else f"{_word(r, 4, 8)}.home")
        self.contacts = [f"{_local(r)}@{r.choice(WORLD)}" for _ in range(r.randint(5, 40))]
        self.per_day = r.uniform(0.5, 8)
        self.dead = r.uniform(0.0, 0.04)

    def client(self, t: float, port25: bool = False, helo: str | None = None) -> Client:
        addr = self.leases[min(int((t - self.b.start) // DAY), len(self.leases) - 1)]
        sasl = "" if port25 else self.sasl
        return Client("", addr, _rdns(addr), sasl, self.mail_from,
                      "submission/smtpd" if sasl else "smtpd", helo or self.helo)

    def run(self) -> None:
        r = self.r
        for t in _times(r, self.b, self.per_day, (7, 23)):
            n = r.choice((1, 1, 1, 1, 2, 2, 3)) if r.random() > 0.03 else r.randint(5, 15)
            rcpts = [r.choice(self.contacts) if r.random() < 0.8 else f"{_local(r)}@"
                     f"{r.choice(WORLD)}" for _ in range(n)]
            self.b.send(self.actor, t, self.client(t), rcpts,
                        [_fate(r, self.dead) for _ in rcpts])


class _Server:
    """A customer's own mail server on a static address: its office mail, and whatever
    else its kind adds (mailshots, bounces, rejection notices)."""

    def __init__(self, b: _Builder, actor: Actor, r: random.Random, per_day: tuple[float, float],
                 mailshots: bool) -> None:
        self.b, self.actor, self.r = b, actor, r
        n = len(b.pop.actors)
        self.domain = f"firm{n}.example"
        addr = b.address(r, dynamic=False)
        helo = r.choice((f"mail.{self.domain}", f"EXCH01.{self.domain}.local",
                         f"firm{n}-server"))
        sasl = f"office@{self.domain}" if r.random() < 0.4 else ""
        self.c = Client("", addr, f"mail.{self.domain}", sasl, f"office@{self.domain}",
                        "submission/smtpd" if sasl else "smtpd", helo)
        self.staff = [f"{_local(r)}@{self.domain}" for _ in range(r.randint(2, 30))]
        self.contacts = [f"{_local(r)}@{r.choice(WORLD)}" for _ in range(r.randint(50, 400))]
        self.per_day = r.uniform(*per_day)
        self.mailshot_days = r.uniform(0.2, 0.6) if mailshots and r.random() < 0.35 else 0.0

    def office(self) -> None:
        r, b = self.r, self.b
        for t in _times(r, b, self.per_day, (8, 18)):
            rcpts = [r.choice(self.contacts) for _ in range(r.choice((1, 1, 1, 2, 2, 3, 4)))]
            b.send(self.actor, t, self.c, rcpts, [_fate(r, 0.015) for _ in rcpts],
                   envelope_from=r.choice(self.staff))
        for d in range(b.days):
            if r.random() < self.mailshot_days:
                self.mailshot(b.start + d * DAY + r.uniform(9, 16) * HOUR)

    def mailshot(self, t: float) -> None:
        """30–400 recipients, 5–12 % dead: a mail merge (one message each) or one BCC."""
        r, b = self.r, self.b
        dead = r.uniform(0.05, 0.12)
        rcpts = [f"{_local(r)}@{r.choice(WORLD)}" for _ in range(r.randint(30, 400))]
        fates = [_fate(r, dead, grey=0.05) for _ in rcpts]
        sender = r.choice(self.staff)
        if r.random() < 0.5:
            for rc, fa in zip(rcpts, fates, strict=True):
                t += r.uniform(1, 8)
                b.send(self.actor, t, self.c, [rc], [fa], envelope_from=sender)
        else:
            b.send(self.actor, t, self.c, rcpts, fates, envelope_from=sender)

    def bounces(self) -> None:
        """Null-sender bounces of mail its own users could not get, to often forged senders."""
        r, b = self.r, self.b
        fail = r.uniform(0.3, 0.7)
        for t in _times(r, b, r.uniform(5, 60), (0, 24)):
            rc = f"{_local(r)}@{r.choice(WORLD)}"
            b.send(self.actor, t, self.c, [rc], [_fate(r, fail)], envelope_from="")

    def rejections(self) -> None:
        """"Undeliverable" notices to the forged senders of spam aimed at its domain."""
        r, b = self.r, self.b
        fail = r.uniform(0.6, 0.95)
        robots = [f"{x}@{self.domain}" for x in r.sample(ROBOT_LOCALS, r.randint(1, 2))]
        for t0 in _times(r, b, r.uniform(2, 8), (0, 24)):
            t = t0
            for _ in range(r.randint(5, 80)):
                t += r.uniform(2, 40)
                rc = f"{_word(r, 5, 10)}@{r.choice(WORLD + FREEMAIL)}"
                fate = (r.choice(("unknown", "unknown", "nodomain", "spam"))
                        if r.random() < fail else "sent")
                b.send(self.actor, t, self.c, [rc], [fate], envelope_from=r.choice(robots))


def _mailing_list(b: _Builder, actor: Actor, r: random.Random) -> None:
    n = len(b.pop.actors)
    dom = f"lists.org{n}.example"
    addr = b.address(r, dynamic=False)
    c = Client("", addr, dom, "", f"news-bounces@{dom}", "smtpd", dom)
    members = [f"{_local(r)}@{r.choice(WORLD)}" for _ in range(r.randint(200, 3000))]
    dead = set(r.sample(range(len(members)), round(len(members) * r.uniform(0.03, 0.12))))
    chunk = r.choice((10, 25, 50, 100))
    for t in _times(r, b, r.uniform(0.5, 3), (6, 22)):
        for i in range(0, len(members), chunk):
            t += r.uniform(0.5, 5)
            part = range(i, min(i + chunk, len(members)))
            fates = [r.choice(("unknown", "unknown", "nodomain")) if k in dead
                     else _fate(r, 0.0, grey=0.02) for k in part]
            b.send(actor, t, c, [members[k] for k in part], fates)


def _spam_bot(b: _Builder, owner: _Consumer, actor: Actor, r: random.Random) -> None:
    """Bursts of 100–3,000 messages an hour, on port 25 beside the owner's SASL mail."""
    style = r.choice(HELO_STYLES)
    word = r.choice(BOT_WORDS)
    forged = r.sample(FREEMAIL, r.randint(1, 4))
    fail = r.uniform(0.4, 0.9)
    t = b.start + r.uniform(2 * HOUR, max(3 * HOUR, (b.end - b.start) * 0.6))
    while t < b.end:
        rate = math.exp(r.uniform(math.log(100), math.log(3000)))
        stop = t + r.uniform(10, 45) * 60
        while t < min(stop, b.end):
            dom = r.choice(forged)
            addr = owner.client(t).addr
            helo = {"under": f"{_word(r, 5, 8)}.{dom}", "domain": dom, "word": word,
                    "random": _word(r, 6, 12), "rdns": _rdns(addr)}[style]
            rcpts = [f"{_word(r, 4, 10)}@{r.choice(WORLD)}" for _ in range(r.randint(1, 5))]
            fates = [r.choice(("unknown", "unknown", "unknown", "spam", "spam", "nodomain"))
                     if r.random() < fail else ("grey" if r.random() < 0.1 else "sent")
                     for _ in rcpts]
            c, sender = owner.client(t, port25=True, helo=helo), f"{_word(r, 6, 10)}@{dom}"
            if r.random() < 0.05:  # a harvested address at a domain that never existed
                _refused_at_rcpt(b, t + 0.2, c, sender, f"{_word(r, 4, 8)}@{_word(r, 6, 9)}.com")
            b.send(actor, t, c, rcpts, fates, envelope_from=sender, bad=True)
            t += r.expovariate(rate / HOUR)
        t = stop + r.uniform(2, 10) * HOUR


def _worm(b: _Builder, owner: _Consumer, actor: Actor, r: random.Random) -> None:
    """One harvested recipient per message, while the machine is on, with a broken HELO."""
    machine = f"{r.choice(('JOHNS', 'MARIA', 'OFFICE', 'HOME', 'USER'))}-PC"
    random_helo = r.random() < 0.4
    virus = r.uniform(0.3, 0.6)
    dead = r.uniform(0.1, 0.3)
    infected = b.start + r.uniform(HOUR, max(2 * HOUR, (b.end - b.start) * 0.6))
    for d in range(b.days):
        for _session in range(r.randint(1, 2)):
            t = max(infected, b.start + d * DAY + r.uniform(7, 21) * HOUR)
            stop = t + r.uniform(1, 4) * HOUR
            rate = r.uniform(20, 300)
            while t < min(stop, b.start + (d + 1) * DAY):
                x = r.random()
                fate = ("virus" if x < virus else "unknown" if x < virus + dead
                        else "sent")
                helo = _word(r, 6, 10).upper() if random_helo else machine
                b.send(actor, t, owner.client(t, port25=True, helo=helo),
                       [f"{_local(r)}@{r.choice(WORLD)}"], [fate],
                       envelope_from=f"{_local(r)}@{r.choice(WORLD)}", bad=True)
                t += r.expovariate(rate / HOUR)


def _counts(customers: int) -> dict[str, int]:
    counts = {k: max(1, round(v * customers / 2000)) for k, v in PER_2000.items()}
    rest = max(2, customers - sum(counts.values()))
    counts[BUSINESS] = max(1, round(rest * BUSINESS_SHARE))
    counts[CONSUMER] = rest - counts[BUSINESS]
    return counts


def populate(
    out: TextIO | Callable[[str], object],
    *,
    customers: int = 2000,
    days: float = 2.0,
    seed: int = 1,
    start: float = DEFAULT_START,
    host: str = "smtp1",
) -> Population:
    """Write the population's log (sorted by time) to `out`; returns the truth."""
    b = _Builder(seed, start, days, host)
    counts = _counts(customers)
    order = [k for k in (CONSUMER, BUSINESS, LIST, BOUNCE_RELAY, REJECTION_DAEMON,
                         SPAM_BOT, WORM) for _ in range(counts[k])]
    b.master.shuffle(order)
    for kind in order:
        r = b.rng()
        actor = Actor(f"{kind}-{len(b.pop.actors)}", kind)
        if kind in (CONSUMER, SPAM_BOT, WORM):
            # A bot's owner authenticates (its port-25 mail is the departure); a worm's may not.
            owner = _Consumer(b, actor, r, sasl=kind == SPAM_BOT or r.random() < 0.6)
            b.pop.actors.append(actor)
            owner.run()
            if kind == SPAM_BOT:
                _spam_bot(b, owner, actor, r)
            elif kind == WORM:
                _worm(b, owner, actor, r)
            continue
        if kind == LIST:
            b.pop.actors.append(actor)
            _mailing_list(b, actor, r)
            continue
        server = _Server(b, actor, r, (10, 120) if kind == BUSINESS else (3, 30),
                         mailshots=kind == BUSINESS)
        b.pop.actors.append(actor)
        server.office()
        if kind == BOUNCE_RELAY:
            server.bounces()
        elif kind == REJECTION_DAEMON:
            server.rejections()

    b.w.lines.sort()
    write = out.write if hasattr(out, "write") else out
    for _t, _seq, text in b.w.lines:
        write(text + "\n")
    b.pop.lines = len(b.w.lines)
    return b.pop
