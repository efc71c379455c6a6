"""An ISP's incoming MX for a day as a Postfix 3.7 log, with the truth about every sender.

For `benchmarks/detection_mx.py` and its test: which bots `mode = "mx"`
contains, which legitimate senders it wrongly throttles, and how fast the
ISP's own infected customers arriving from outside are stopped. The groups
(counts fixed, volume scaled by `scale`; 1.0 is about 450,000 lines):

- big providers (6): pools of addresses, most of the day's mail, a little spam;
- small MTAs (100): a firm's server, a few messages a day, the odd typo;
- newsletter senders (25): one message per recipient (VERP), a few dead addresses;
- Mailman hosts (15): 2–6 lists each, stable `-bounces@` senders, deliveries working;
- forwarders (23): SRS envelope senders, passing on some spam their users got;
- business customers (3): the ISP's own business ranges, their own MTA, allowed;
- dictionary-attack bots (20): forged HELOs (our domain, our address literal, the
  MAIL FROM domain, several per session), guessed recipients; 14 aggressive,
  3 low-and-slow, 3 listed in the DNSBL so postscreen refuses them before smtpd;
- infected own customers (5): in the ISP's dynamic pool, sending spam direct to
  the MX; 2 refused by postscreen (the PBL).

Lines come from `extrusion_dev.mxsession`. Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from extrusion.keys import client_key
from extrusion_dev.mxsession import MX_ADDR, SPAMD, Client, MxWriter, Transaction
from extrusion_dev.population import DEFAULT_START, _local, _word

DAY = 86400.0
HOUR = 3600.0
OUR_DOMAIN = "isp.example"
OUR_DOMAINS = (OUR_DOMAIN, "mail.isp.example")
DYNAMIC_POOL, BUSINESS_POOL = "100.64.0.0/10", "81.16.0.0/12"  # conf/extrusion-mx.toml

BIG, SMALL, NEWSLETTER, LISTS, FORWARDER = (
    "big_provider", "small_mta", "newsletter", "list_server", "forwarder")
BUSINESS, BOT, OWN_INFECTED = "business_customer", "bot", "own_infected"
LEGITIMATE = (BIG, SMALL, NEWSLETTER, LISTS, FORWARDER, BUSINESS)
BAD = (BOT, OWN_INFECTED)
AGGRESSIVE, SLOW, REFUSED = "aggressive", "low_and_slow", "postscreen"
# Big providers: name, HELO domain, the first two octets of its pool.
PROVIDERS = (("gmail.com", "google.com", "209.85"), ("outlook.com", "outbound.protection."
             "outlook.com", "40.107"), ("yahoo.com", "mail.yahoo.com", "98.137"),
             ("gmx.net", "gmx.net", "212.227"), ("web.de", "web.de", "217.72"),
             ("icloud.com", "mail.icloud.com", "17.58"))
OUTSIDE = (5, 31, 37, 46, 62, 77, 85, 91, 93, 94, 151, 176, 178, 185, 188, 193, 194, 195, 213)


@dataclass
class Sender:
    """The truth about one sender: its group, the keys its mail came under, when it
    was first seen, and its bot style (`AGGRESSIVE`, `SLOW`, `REFUSED`, or "")."""

    name: str
    group: str
    keys: set[str] = field(default_factory=set)
    addrs: set[str] = field(default_factory=set)  # the client addresses it came from
    first: float = float("inf")
    style: str = ""
    key: str = ""  # the key a [[customers]] entry gives it ("" = ip:ADDRESS)
    sessions: int = 0
    rcpts: int = 0


@dataclass
class MxPopulation:
    start: float
    end: float
    senders: list[Sender] = field(default_factory=list)
    lines: int = 0
    sessions: int = 0

    def groups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.senders:
            out[s.group] = out.get(s.group, 0) + 1
        return out

    def summary(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "lines": self.lines,
                "sessions": self.sessions,
                "senders": [{"name": s.name, "group": s.group, "keys": sorted(s.keys),
                             "addrs": sorted(s.addrs),
                             "first": s.first, "style": s.style, "sessions": s.sessions,
                             "rcpts": s.rcpts} for s in self.senders]}


class _Day:
    """The writer, our users and the truth while the senders' sessions are written."""

    def __init__(self, seed: int, scale: float, start: float, spam_filter: str) -> None:
        self.master = random.Random(seed)
        self.mx = MxWriter(self.master.getrandbits(64), "mx1", spam_filter)
        self.start, self.end, self.scale = start, start + DAY, scale
        self.pop = MxPopulation(self.start, self.end)
        self.users = [f"{_local(self.master)}@{OUR_DOMAIN}" for _ in range(20000)]
        self.used: set[str] = set()

    def rng(self) -> random.Random:
        return random.Random(self.master.getrandbits(64))

    def addr(self, r: random.Random, prefix: str = "") -> str:
        while True:
            a = (f"{prefix}.{r.randint(0, 255)}.{r.randint(1, 254)}" if prefix.count(".") == 1
                 else f"{prefix}.{r.randint(1, 254)}" if prefix
                 else f"{r.choice(OUTSIDE)}.{r.randint(0, 255)}.{r.randint(0, 255)}."
                      f"{r.randint(1, 254)}")
            if a not in self.used:
                self.used.add(a)
                return a

    def users_of(self, r: random.Random, n: int, dead: float) -> tuple[list[str], set[str]]:
        """`n` recipients at our domain, a share `dead` of them no longer existing."""
        rcpts = r.sample(self.users, min(n, len(self.users)))
        unknown = {f"{_local(r)}x@{OUR_DOMAIN}" for _ in range(n) if r.random() < dead}
        return rcpts + sorted(unknown), unknown

    def times(self, r: random.Random, per_day: float, hours: tuple[float, float] = (0, 24),
              ) -> list[float]:
        # At least once: every sender of the truth is heard from, however small the day.
        n = max(1, round(r.gauss(per_day * self.scale, (per_day * self.scale) ** 0.5)))
        return sorted(self.start + r.uniform(*hours) * HOUR for _ in range(n))

    def send(self, s: Sender, t: float, c: Client, trs: list[Transaction], *,
             tls: bool = False) -> None:
        if not self.start <= t < self.end:
            return
        self.mx.session(t, c, trs, tls=tls)
        self._count(s, t, c, sum(len(x.rcpts) for x in trs))

    def refused(self, s: Sender, t: float, c: Client, mail_from: str, rcpts: list[str],
                pregreet: bool = False) -> None:
        if not self.start <= t < self.end:
            return
        self.mx.postscreen_refused(t, c, mail_from, rcpts, pregreet=pregreet)
        self._count(s, t, c, len(rcpts))

    def _count(self, s: Sender, t: float, c: Client, rcpts: int) -> None:
        s.keys.add(s.key or client_key(c.addr))
        s.addrs.add(c.addr)
        s.first = min(s.first, t)
        s.sessions += 1
        s.rcpts += rcpts
        self.pop.sessions += 1

    def add(self, name: str, group: str, style: str = "") -> Sender:
        s = Sender(name, group, style=style)
        self.pop.senders.append(s)
        return s


def _big(d: _Day, r: random.Random, domain: str, helo_dom: str, pool: str) -> None:
    s = d.add(domain, BIG)
    hosts = [d.addr(r, pool) for _ in range(r.randint(20, 50))]
    for t in d.times(r, r.uniform(1500, 3500), (5, 24)):
        a = r.choice(hosts)
        name = f"mail-{a.replace('.', '-')}.{helo_dom}"
        rcpts, unknown = d.users_of(r, r.choice((1, 1, 1, 2, 3)), 0.01)
        tr = Transaction(f"{_local(r)}@{domain}", rcpts, unknown, spam=r.random() < 0.01)
        d.send(s, t, Client(a, name, name), [tr], tls=True)


def _small(d: _Day, r: random.Random, i: int) -> None:
    dom = f"firm{i}.example"
    s = d.add(dom, SMALL)
    a = d.addr(r)
    helo = r.choice((f"mail.{dom}", f"mx.{dom}", f"srv01.{dom}"))
    staff = [f"{_local(r)}@{dom}" for _ in range(r.randint(2, 20))]
    for t in d.times(r, r.uniform(3, 40), (7, 19)):
        rcpts, unknown = d.users_of(r, r.choice((1, 1, 2, 3)), 0.02)
        d.send(s, t, Client(a, f"mail.{dom}", helo), [Transaction(r.choice(staff), rcpts,
                                                                  unknown)])


def _newsletter(d: _Day, r: random.Random, i: int) -> None:
    dom = f"news.shop{i}.example"
    s = d.add(dom, NEWSLETTER)
    hosts = [d.addr(r) for _ in range(r.randint(1, 3))]
    dead = r.uniform(0.005, 0.04)
    for t0 in d.times(r, r.uniform(1, 2.5), (6, 20)):
        rcpts, unknown = d.users_of(r, max(20, round(r.randint(80, 700) * d.scale)), dead)
        t = t0
        for k in range(0, len(rcpts), 10):  # one connection, ten messages, one each
            a = r.choice(hosts)
            name = f"o{hosts.index(a)}.{dom}"  # each host its own name, as in its PTR
            trs = [Transaction(f"bounce-{r.getrandbits(24):x}-{x.replace('@', '=')}@{dom}",
                               [x], unknown & {x}) for x in rcpts[k:k + 10]]
            d.send(s, t, Client(a, name, name), trs, tls=True)
            t += r.uniform(2, 30)


def _mailman(d: _Day, r: random.Random, i: int) -> None:
    dom = f"lists.org{i}.example"
    s = d.add(dom, LISTS)
    a = d.addr(r)
    lists = [(f"{_word(r, 4, 9)}-bounces@{dom}", r.sample(d.users, r.randint(10, 80)))
             for _ in range(r.randint(2, 6))]
    for t in d.times(r, r.uniform(8, 40), (0, 24)):
        sender, members = r.choice(lists)
        d.send(s, t, Client(a, dom, dom), [Transaction(sender, list(members))])


def _forwarder(d: _Day, r: random.Random, i: int, big: bool) -> None:
    dom = f"fwd{i}.example"
    s = d.add(dom, FORWARDER)
    hosts = [d.addr(r) for _ in range(3 if big else 1)]
    spam = r.uniform(0.1, 0.35)
    for t in d.times(r, r.uniform(300, 900) if big else r.uniform(10, 80), (0, 24)):
        orig = f"{_local(r)}@{r.choice(('gmail.com', 'web.de', 'example.net', 'shop.example'))}"
        user, _at, odom = orig.partition("@")
        srs = f"SRS0={r.getrandbits(16):04x}={_word(r, 2, 2).upper()}={odom}={user}@{dom}"
        a = r.choice(hosts)
        tr = Transaction(srs, [r.choice(d.users)], spam=r.random() < spam)
        d.send(s, t, Client(a, f"mx{hosts.index(a)}.{dom}", f"mx{hosts.index(a)}.{dom}"), [tr])


def _business(d: _Day, r: random.Random, i: int) -> None:
    dom = f"customer{i}.example"
    s = d.add(f"customer{i}", BUSINESS)
    s.key = f"customer:customer{i}"  # conf/extrusion-mx.toml names its range
    a = d.addr(r, f"81.{16 + i}.{r.randint(0, 255)}")
    staff = [f"{_local(r)}@{dom}" for _ in range(r.randint(5, 40))]
    for t in d.times(r, r.uniform(40, 200), (7, 19)):
        rcpts, unknown = d.users_of(r, r.choice((1, 1, 2, 4)), 0.02)
        d.send(s, t, Client(a, f"mail.{dom}", f"mail.{dom}"),
               [Transaction(r.choice(staff), rcpts, unknown)])


def _bot_helos(r: random.Random, mail_dom: str) -> list[str]:
    """Forged HELOs: our domain, our address literal, the MAIL FROM domain, a random word."""
    return [OUR_DOMAIN, f"[{MX_ADDR}]", mail_dom, r.choice(OUR_DOMAINS), _word(r, 6, 10)]


def _bot(d: _Day, r: random.Random, i: int, style: str) -> None:
    s = d.add(f"bot{i}", BOT, style)
    a = d.addr(r)
    c = Client(a, "unknown", "")
    if style == SLOW:  # a session every half hour or so, all day
        t0, span, n = d.start + r.uniform(0, 4) * HOUR, 20 * HOUR, 40
    else:  # a burst of an hour or three, refused by postscreen or not
        t0, span, n = d.start + r.uniform(0, 20) * HOUR, r.uniform(1, 3) * HOUR, 120
    for t in sorted(t0 + r.uniform(0, span) for _ in range(max(8, round(n * d.scale)))):
        mail_dom = r.choice(("gmail.com", "yahoo.com", f"{_word(r, 5, 8)}.example"))
        helos = _bot_helos(r, mail_dom)
        c.helo = r.choice(helos)
        mail_from = f"{_word(r, 4, 8)}@{mail_dom}"
        # Low and slow: a few guesses per connection, never many failures in an hour.
        tries = r.randint(1, 3) if style == SLOW else r.randint(3, 25)
        guesses = [f"{_word(r, 3, 8)}@{OUR_DOMAIN}" for _ in range(tries)]
        if style == REFUSED:
            # Now and then the bot hangs up after postscreen's tests, before any RCPT.
            d.refused(s, t, c, mail_from, guesses if r.random() > 0.2 else [],
                      pregreet=r.random() < 0.5)
            continue
        hits = r.sample(d.users, max(1, len(guesses) // 8))
        trs = [Transaction(mail_from, guesses + hits, set(guesses), spam=r.random() < 0.6,
                           helo=r.choice(helos) if k else "") for k in range(r.randint(1, 3))]
        d.send(s, t, c, trs)


def _own_infected(d: _Day, r: random.Random, i: int, refused: bool) -> None:
    s = d.add(f"own{i}", OWN_INFECTED, REFUSED if refused else "")
    a = d.addr(r, f"100.{64 + i * 7}.{r.randint(0, 255)}")
    name = f"dyn-{a.replace('.', '-')}.pool.{OUR_DOMAIN}"
    c = Client(a, name, f"DESKTOP-{_word(r, 7, 7).upper()}" if r.random() < 0.5 else name)
    t0 = d.start + r.uniform(1, 18) * HOUR
    for t in sorted(t0 + r.uniform(0, 4 * HOUR) for _ in range(max(10, round(300 * d.scale)))):
        mail_from = f"{_word(r, 4, 8)}@{r.choice(('gmail.com', 'hotmail.com', 'yahoo.com'))}"
        rcpts, unknown = d.users_of(r, r.randint(1, 6), 0.3)
        if refused:
            d.refused(s, t, c, mail_from, rcpts)
        else:
            d.send(s, t, c, [Transaction(mail_from, rcpts, unknown, spam=r.random() < 0.7)])


def populate_mx(out: TextIO | Callable[[str], object], *, scale: float = 1.0, seed: int = 1,
                start: float = DEFAULT_START, spam_filter: str = SPAMD) -> MxPopulation:
    """Write a day of the MX's log (sorted by time) to `out`; return the truth."""
    if not 0 < scale <= 10:
        raise ValueError("scale must be above 0 and at most 10")
    d = _Day(seed, scale, start, spam_filter)
    for domain, helo_dom, pool in PROVIDERS:
        _big(d, d.rng(), domain, helo_dom, pool)
    for i in range(100):
        _small(d, d.rng(), i)
    for i in range(25):
        _newsletter(d, d.rng(), i)
    for i in range(15):
        _mailman(d, d.rng(), i)
    for i in range(23):
        _forwarder(d, d.rng(), i, big=i < 4)
    for i in range(3):
        _business(d, d.rng(), i)
    for i in range(20):
        _bot(d, d.rng(), i, AGGRESSIVE if i < 14 else SLOW if i < 17 else REFUSED)
    for i in range(5):
        _own_infected(d, d.rng(), i, refused=i < 2)
    lines = d.mx.w.lines
    lines.sort()
    write = out.write if hasattr(out, "write") else out
    for _t, _seq, text in lines:
        write(text + "\n")
    d.pop.lines = len(lines)
    return d.pop
