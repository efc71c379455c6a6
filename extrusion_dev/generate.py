"""Generate a realistic Postfix smarthost log with known spam bots hidden in it.

Used by the replay test, the replay benchmark and the demo:

    truth = generate(open("mail.log", "w"), seed=1, messages=5000, bots=1)
    truth.bots        # sender keys that must be caught
    truth.innocent    # sender keys that must not be

Normal customers (IP and SASL, IPv4 and IPv6, a few UTF-8 addresses) send one
to three recipients with the occasional unknown user, greylisting deferral
or full mailbox; a newsletter host sends list posts with a few dead
addresses; a customer's mail server relays its bounces (`<>`, failing
often); outsiders probe for an open relay a couple of times each. Each bot
sends a burst of spam to harvested addresses: most bounce as unknown users
or are refused as spam. Lines carry the usual noise (connect, disconnect,
TLS, anvil statistics) and queue ids, pids and timing look like Postfix 3.
Deterministic for a given seed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from extrusion.scoring.decisions import HELO_NOTE

MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DOMAINS = (
    "example.org", "example.net", "mail.example.com", "gmail.com", "yahoo.com", "outlook.com",
    "web.de", "orange.fr", "libero.it", "t-online.de", "comcast.net", "hinet.net",
)
MX = {
    "gmail.com": ("gmail-smtp-in.l.google.com", "142.250.102.27"),
    "yahoo.com": ("mta7.am0.yahoodns.net", "67.195.204.77"),
    "outlook.com": ("outlook-com.olc.protection.outlook.com", "52.101.68.22"),
}
FIRST = ("anna", "bob", "carl", "dora", "emil", "fred", "gina", "hugo", "ines", "jan", "kai",
         "lena", "mia", "nils", "olga", "paul", "rita", "sven", "tina", "uwe", "vera", "xaver")
UTF8_LOCALS = ("jürgen", "zoë", "łukasz", "ñandú", "θεόδωρος")
SPAM_LOCALS = ("info", "sales", "admin", "webmaster", "contact", "office", "support", "jobs")

REPLY_SENT = "250 2.0.0 OK  {t} {qid} - gsmtp"
REPLY_UNKNOWN = (
    "host {mx}[{ip}] said: 550 5.1.1 <{rcpt}>: Recipient address rejected: "
    "User unknown in virtual mailbox table (in reply to RCPT TO command)"
)
REPLY_SPAM = (
    "host {mx}[{ip}] said: 554 5.7.1 Message rejected as spam; see "
    "https://postmaster.{dom}/spam (in reply to end of DATA command)"
)
REPLY_FULL = "host {mx}[{ip}] said: 552 5.2.2 <{rcpt}>: mailbox full (in reply to RCPT TO command)"
REPLY_GREY = (
    "host {mx}[{ip}] said: 451 4.7.1 <{rcpt}>: Greylisted, try again in 5 minutes "
    "(in reply to RCPT TO command)"
)
REPLY_VIRUS = (
    "host {mx}[{ip}] said: 554 5.7.1 Message rejected: virus found in attachment "
    "(W32/Mydoom.A@mm) (in reply to end of DATA command)"
)
REPLY_NODOMAIN = (
    "Host or domain name not found. Name service error for name={dom} type=MX: Host not found"
)


@dataclass
class Truth:
    """What the generated log contains, for tests and benchmarks to check against."""

    bots: list[str] = field(default_factory=list)
    innocent: list[str] = field(default_factory=list)
    lines: int = 0
    messages: int = 0
    start: float = 0.0
    end: float = 0.0


@dataclass
class Client:
    """One customer connection as the log shows it (the writer's view of a sender)."""

    key: str
    addr: str
    name: str
    sasl: str
    mail_from: str
    service: str  # smtpd or submission/smtpd
    helo: str


# (connection, envelope sender) -> the kinds of the HELO's anomalies, "" for none.
HeloJudge = Callable[[Client, str], str]


class LogWriter:
    """Writes Postfix 3 lines for messages and their outcomes; `lines` is unsorted.

    With `helo_note`, a message whose HELO that judge finds suspect (it returns
    the anomalies' kinds, "" for a clean HELO) also gets the line Postfix
    writes for extrusion's policy server's INFO answer at END-OF-MESSAGE,
    as on a smarthost wired to extrusion (see decisions.HELO_NOTE).
    """

    def __init__(self, seed: int, host: str, rfc3339: bool, *,
                 helo_note: HeloJudge | None = None) -> None:
        self.rnd = random.Random(seed)
        self.helo_note = helo_note
        self.host = host
        self.rfc3339 = rfc3339
        self.lines: list[tuple[float, int, str]] = []
        self.seq = 0
        self.qids: set[str] = set()
        self._stamp_cache: dict[int, str] = {}

    # --- output helpers ---

    def stamp(self, t: float) -> str:
        sec = int(t)
        s = self._stamp_cache.get(sec)
        if s is None:
            tm = time.localtime(sec)
            if self.rfc3339:
                off = time.strftime("%z", tm)
                s = time.strftime("%Y-%m-%dT%H:%M:%S", tm) + "{frac}" + off[:3] + ":" + off[3:]
            else:
                s = (f"{MONTH_ABBR[tm.tm_mon - 1]} {tm.tm_mday:2d} "
                     f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}")
            if len(self._stamp_cache) > 100_000:
                self._stamp_cache.clear()
            self._stamp_cache[sec] = s
        if self.rfc3339:
            return s.replace("{frac}", f".{int((t - sec) * 1e6):06d}")
        return s

    def emit(self, t: float, prog: str, pid: int, text: str) -> None:
        self.seq += 1
        self.lines.append((t, self.seq, f"{self.stamp(t)} {self.host} {prog}[{pid}]: {text}"))

    def qid(self) -> str:
        while True:
            q = "".join(self.rnd.choice("0123456789ABCDEF") for _ in range(10))
            if q not in self.qids:
                self.qids.add(q)
                return q

    def pid(self) -> int:
        return self.rnd.randint(1000, 65000)

    def local(self) -> str:
        r = self.rnd
        if r.random() < 0.02:
            return r.choice(UTF8_LOCALS)
        return f"{r.choice(FIRST)}.{r.choice(FIRST)}{r.randint(1, 99)}"

    def recipient(self) -> str:
        return f"{self.local()}@{self.rnd.choice(DOMAINS)}"

    def mx(self, rcpt: str) -> tuple[str, str]:
        dom = rcpt.rpartition("@")[2]
        if dom in MX:
            return MX[dom]
        h = sum(map(ord, dom))
        return f"mx{h % 3 + 1}.{dom}", f"198.51.{h % 250}.{h % 200 + 20}"

    # --- one message ---

    def message(self, t: float, s: Client, rcpts: list[str], fates: list[str],
                envelope_from: str | None = None) -> list[tuple[float, bool]]:
        """Log one message: fates per recipient are sent/unknown/spam/virus/full/grey/nodomain.

        Returns each recipient's final outcome as (time, delivered): a greylisted
        recipient is delivered on the retry, every other fate but "sent" failed."""
        r = self.rnd
        q = self.qid()
        spid, cpid, qpid = self.pid(), self.pid(), 1234
        prog = f"postfix/{s.service}"
        mail_from = s.mail_from if envelope_from is None else envelope_from
        self.emit(t, prog, spid, f"connect from {s.name}[{s.addr}]")
        t += r.uniform(0.05, 0.4)
        sasl = f", sasl_method=PLAIN, sasl_username={s.sasl}" if s.sasl else ""
        self.emit(t, prog, spid, f"{q}: client={s.name}[{s.addr}]{sasl}")
        t += r.uniform(0.01, 0.2)
        self.emit(t, "postfix/cleanup", cpid,
                  f"{q}: message-id=<{r.getrandbits(48):x}.{q}@{s.helo}>")
        note = self.helo_note(s, mail_from) if self.helo_note is not None else ""
        if note:
            # smtpd logs the policy server's INFO after the message is queued; Postfix
            # names the recipient only when there is exactly one.
            to = f" to=<{rcpts[0]}>" if len(rcpts) == 1 else ""
            self.emit(t + 0.005, prog, spid,
                      f"{q}: info: END-OF-MESSAGE from {s.name}[{s.addr}]: {HELO_NOTE}{note}; "
                      f"from=<{mail_from}>{to} proto=ESMTP helo=<{s.helo}>")
        size = r.randint(900, 60000)
        t += r.uniform(0.01, 0.1)
        self.emit(t, "postfix/qmgr", qpid,
                  f"{q}: from=<{mail_from}>, size={size}, nrcpt={len(rcpts)} (queue active)")
        self.emit(t + 0.01, prog, spid,
                  f"disconnect from {s.name}[{s.addr}] ehlo=1 mail=1 rcpt={len(rcpts)} data=1 "
                  f"quit=1 commands={len(rcpts) + 4}")
        last = t
        bounced: list[str] = []
        finals: list[tuple[float, bool]] = []
        for rcpt, fate in zip(rcpts, fates, strict=True):
            dt_ = r.uniform(0.3, 4.0)
            tt = t + dt_
            mx, ip = self.mx(rcpt)
            dom = rcpt.rpartition("@")[2]
            pid = self.pid()
            relay = f"{mx}[{ip}]:25"
            delays = f"delay={dt_:.1f}, delays=0.05/0.01/{dt_ / 2:.1f}/{dt_ / 2:.1f}"
            if fate == "sent":
                if r.random() < 0.3:
                    self.emit(tt - 0.05, "postfix/smtp", pid,
                              f"Trusted TLS connection established to {relay}: TLSv1.3 with "
                              f"cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
                self.emit(tt, "postfix/smtp", pid,
                          f"{q}: to=<{rcpt}>, relay={relay}, {delays}, dsn=2.0.0, status=sent "
                          f"({REPLY_SENT.format(t=int(tt), qid=q)})")
            elif fate == "grey":
                self.emit(tt, "postfix/smtp", pid,
                          f"{q}: to=<{rcpt}>, relay={relay}, {delays}, dsn=4.7.1, status=deferred "
                          f"({REPLY_GREY.format(mx=mx, ip=ip, rcpt=rcpt)})")
                tt += r.uniform(300, 900)
                self.emit(tt - 0.2, "postfix/qmgr", qpid, f"{q}: from=<{mail_from}>, "
                          f"size={size}, nrcpt={len(rcpts)} (queue active)")
                self.emit(tt, "postfix/smtp", self.pid(),
                          f"{q}: to=<{rcpt}>, relay={relay}, delay={tt - t:.0f}, "
                          f"delays={tt - t - 1:.0f}/0.01/0.4/0.5, dsn=2.0.0, status=sent "
                          f"({REPLY_SENT.format(t=int(tt), qid=q)})")
            else:
                reply = {"unknown": REPLY_UNKNOWN, "spam": REPLY_SPAM, "virus": REPLY_VIRUS,
                         "full": REPLY_FULL, "nodomain": REPLY_NODOMAIN,
                         }[fate].format(mx=mx, ip=ip, rcpt=rcpt, dom=dom)
                dsn = {"unknown": "5.1.1", "spam": "5.7.1", "virus": "5.7.1", "full": "5.2.2",
                       "nodomain": "5.4.4"}[fate]
                rel = "none" if fate == "nodomain" else relay
                self.emit(tt, "postfix/smtp", pid,
                          f"{q}: to=<{rcpt}>, relay={rel}, {delays}, dsn={dsn}, status=bounced "
                          f"({reply})")
                bounced.append(rcpt)
            finals.append((tt, fate in ("sent", "grey")))
            last = max(last, tt)
        if bounced and mail_from:
            nq = self.qid()
            tb = last + 0.05
            self.emit(tb, "postfix/bounce", self.pid(),
                      f"{q}: sender non-delivery notification: {nq}")
            self.emit(tb + 0.01, "postfix/cleanup", cpid, f"{nq}: message-id=<{nq}@{self.host}>")
            self.emit(tb + 0.02, "postfix/qmgr", qpid,
                      f"{nq}: from=<>, size={size + 2000}, nrcpt=1 (queue active)")
            mx, ip = self.mx(mail_from)
            self.emit(tb + 0.8, "postfix/smtp", self.pid(),
                      f"{nq}: to=<{mail_from}>, relay={mx}[{ip}]:25, delay=0.8, "
                      f"delays=0.02/0/0.3/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)")
            self.emit(tb + 0.81, "postfix/qmgr", qpid, f"{nq}: removed")
        self.emit(last + 0.01, "postfix/qmgr", qpid, f"{q}: removed")
        return finals


def _ipv4(r: random.Random, net: str) -> str:
    return f"{net}.{r.randint(2, 254)}"


def generate(
    out: TextIO | Callable[[str], object],
    *,
    seed: int = 1,
    messages: int = 2000,
    senders: int = 60,
    bots: int = 1,
    bot_messages: int = 120,
    start: float | None = None,
    duration: float = 8 * 3600.0,
    host: str = "smtp1",
    rfc3339: bool = False,
) -> Truth:
    """Write the log (sorted by time) to `out` (a text file or a line callback)."""
    g = LogWriter(seed, host, rfc3339)
    r = g.rnd
    t0 = float(int(start if start is not None else time.time() - duration - 3600))
    truth = Truth(start=t0, end=t0 + duration)

    customers: list[Client] = []
    for i in range(senders):
        if i % 3 == 0:
            user = f"{r.choice(FIRST)}{i}@customer{i}.example"
            addr = _ipv4(r, f"100.64.{i % 200}")
            s = Client(f"sasl:{user}", addr, "unknown", user, user, "submission/smtpd",
                        f"pc{i}.home")
        elif i % 7 == 0:
            addr = f"2001:db8:{i:x}::{r.randint(1, 0xFFFF):x}"
            s = Client(f"ip:{addr}", addr, f"host{i}.v6.example", "",
                        f"office@firm{i}.example", "smtpd", f"mail.firm{i}.example")
        else:
            addr = _ipv4(r, f"192.0.{i % 250}")
            s = Client(f"ip:{addr}", addr, f"dsl-{i}.isp.example", "",
                        f"{r.choice(FIRST)}@home{i}.example", "smtpd", f"dsl-{i}.isp.example")
        customers.append(s)
    newsletter = Client("ip:203.0.113.10", "203.0.113.10", "news.shop.example", "",
                         "newsletter@shop.example", "smtpd", "news.shop.example")
    relay = Client("ip:203.0.113.20", "203.0.113.20", "mx.firm.example", "",
                    "", "smtpd", "mx.firm.example")
    truth.innocent = [s.key for s in customers] + [newsletter.key, relay.key]

    fates = ("sent",) * 94 + ("unknown",) * 2 + ("grey",) * 2 + ("full",) + ("nodomain",)
    for _ in range(messages):
        s = r.choice(customers)
        t = t0 + r.uniform(0, duration)
        n = r.choice((1, 1, 1, 1, 2, 2, 3))
        g.message(t, s, [g.recipient() for _ in range(n)], [r.choice(fates) for _ in range(n)])
    truth.messages = messages

    # A list post every two hours: 40 recipients, a few dead addresses.
    for k in range(max(1, int(duration // 7200))):
        t = t0 + 600 + k * 7200
        rcpts = [g.recipient() for _ in range(40)]
        g.message(t, newsletter, rcpts, ["unknown" if r.random() < 0.06 else "sent" for _ in rcpts])
    # A customer's server relaying its own bounces: null sender, often failing.
    for _ in range(max(5, messages // 100)):
        t = t0 + r.uniform(0, duration)
        g.message(t, relay, [g.recipient()], [r.choice(("unknown", "sent"))], envelope_from="")
    # Outsiders probing for an open relay, two or three tries each.
    for i in range(max(3, messages // 500)):
        ip = _ipv4(r, "198.18.7")
        for _ in range(r.randint(2, 3)):
            t = t0 + r.uniform(0, duration)
            g.emit(t, "postfix/smtpd", g.pid(),
                   f"NOQUEUE: reject: RCPT from unknown[{ip}]: 554 5.7.1 <{g.recipient()}>: "
                   f"Relay access denied; from=<spam{i}@{ip}.example> to=<{g.recipient()}> "
                   f"proto=ESMTP helo=<{ip}>")
    # Noise every few minutes.
    for k in range(int(duration // 300)):
        t = t0 + k * 300
        g.emit(t, "postfix/anvil", g.pid(),
               f"statistics: max connection rate 3/60s for (smtp:192.0.2.{k % 250}) at "
               f"{g.stamp(t)[:15]}")
        g.emit(t + 1, "postfix/smtpd", g.pid(), "warning: hostname 203-0-113-9.example does "
               "not resolve to address 203.0.113.9: Name or service not known")
    # The bots: a harvested list, most addresses dead or refusing spam.
    for b in range(bots):
        ip = _ipv4(r, f"192.0.{250 + b % 5}") if b % 2 == 0 else f"2001:db8:bad::{b + 1:x}"
        bot = Client(f"ip:{ip}", ip, "unknown", "", f"{r.choice(SPAM_LOCALS)}@{ip}.example",
                      "smtpd", "localhost")
        truth.bots.append(bot.key)
        t_start = t0 + duration * (0.3 + 0.4 * r.random())
        for _ in range(bot_messages):
            t = t_start + r.uniform(0, 3600)
            n = r.randint(1, 4)
            rcpts = [f"{r.choice(SPAM_LOCALS)}{r.randint(1, 999)}@{r.choice(DOMAINS)}"
                     for _ in range(n)]
            g.message(t, bot, rcpts,
                      [r.choice(("unknown", "unknown", "spam", "sent", "nodomain"))
                       for _ in rcpts])

    g.lines.sort()
    write = out.write if hasattr(out, "write") else out
    for _t, _seq, text in g.lines:
        write(text + "\n")
    truth.lines = len(g.lines)
    return truth


def iter_lines(**kwargs: object) -> Iterator[str]:
    """The generated lines as an iterator (newline stripped)."""
    collected: list[str] = []
    generate(collected.append, **kwargs)  # type: ignore[arg-type]
    return (line.rstrip("\n") for line in collected)
