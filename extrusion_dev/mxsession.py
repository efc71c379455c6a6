"""The lines a Postfix 3.7 MX writes for one incoming connection, for the MX population.

An incoming connection meets postscreen first (CONNECT, PASS NEW/OLD, or a
DNSBL rank that refuses every RCPT with its own comma-separated tail), then
smtpd: `connect`, per transaction `QID: client=` and one `reject: RCPT …
User unknown in local recipient table` line per unknown recipient (NOQUEUE
until the first recipient is accepted, the queue id after), cleanup's
`message-id=`, the spam filter's verdict (spamd through spamass-milter, or
amavis through amavisd-milter), then either cleanup's `milter-reject:
END-OF-MESSAGE` or qmgr and one LMTP delivery to Dovecot per recipient, and
smtpd's `disconnect` with Postfix's `ok/total` command counts.

`extrusion_dev.mxpopulation` decides who sends what; this module only
writes it, through `generate.LogWriter` (stamps, queue ids, pids).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from extrusion_dev.generate import LogWriter

# The MX itself: its public address (a bot's "[192.0.2.25]" HELO) and its Dovecot.
MX_ADDR = "192.0.2.25"
LMTP_RELAY = "mail.isp.example[private/dovecot-lmtp]"
DNSBL = "zen.spamhaus.org"
SPAMD, AMAVIS = "spamd", "amavis"
FILTERS = (SPAMD, AMAVIS)
REJECT_UNKNOWN = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local " \
    "recipient table"
REJECT_SPAM = {SPAMD: "5.7.1 Blocked by SpamAssassin", AMAVIS: "5.7.0 Reject, id={id} - spam"}
RULES = ("BAYES_99", "RCVD_IN_XBL", "URIBL_BLACK", "HTML_MESSAGE", "FREEMAIL_FROM",
         "RDNS_NONE", "MIME_HTML_ONLY", "DKIM_ADSP_NXDOMAIN")


@dataclass
class Transaction:
    """One MAIL FROM … DATA: recipients our users (`unknown` ones refused at RCPT);
    `spam`: the filter's verdict, which makes the milter refuse the whole message."""

    mail_from: str
    rcpts: list[str]
    unknown: set[str] = field(default_factory=set)
    spam: bool = False
    helo: str = ""  # a new EHLO before this transaction ("" = keep the session's)


@dataclass
class Client:
    addr: str
    name: str  # reverse DNS as smtpd shows it, "unknown" when none
    helo: str


class MxWriter:
    """Writes the MX's lines for connections; `lines` is what `LogWriter` collects."""

    def __init__(self, seed: int, host: str, spam_filter: str = SPAMD) -> None:
        if spam_filter not in FILTERS:
            raise ValueError(f"spam filter must be one of {', '.join(FILTERS)}")
        self.w = LogWriter(seed, host, True)
        self.r = self.w.rnd
        self.filter = spam_filter
        self.passed: set[str] = set()  # postscreen's cache: PASS NEW once, then PASS OLD

    def _ps(self, t: float, text: str) -> None:
        self.w.emit(t, "postfix/postscreen", self._ps_pid, text)

    _ps_pid = 911  # one long-running postscreen process

    def postscreen_pass(self, t: float, addr: str, port: int) -> float:
        """CONNECT and PASS: the client goes on to smtpd. Returns the time after."""
        self._ps(t, f"CONNECT from [{addr}]:{port} to [{MX_ADDR}]:25")
        if addr in self.passed:
            self._ps(t + 0.001, f"PASS OLD [{addr}]:{port}")
            return t + 0.01
        self.passed.add(addr)
        t += self.r.uniform(6.0, 6.5)  # greet pause plus DNSBL lookups
        self._ps(t, f"PASS NEW [{addr}]:{port}")
        return t + 0.01

    def postscreen_refused(self, t: float, c: Client, mail_from: str, rcpts: list[str], *,
                           rank: int = 3, pregreet: bool = False) -> float:
        """Listed in the DNSBL: postscreen talks to the client itself and refuses each
        RCPT; smtpd never sees it. Returns the time after the disconnect."""
        port = self.r.randint(1024, 65535)
        peer = f"[{c.addr}]:{port}"
        self._ps(t, f"CONNECT from {peer} to [{MX_ADDR}]:25")
        t += self.r.uniform(0.1, 0.6)
        if pregreet:
            self._ps(t, f"PREGREET 11 after {self.r.uniform(0.1, 0.5):.2f} from {peer}: "
                        f"EHLO {c.helo}\\r\\n")
        t += self.r.uniform(5.5, 6.2)
        self._ps(t, f"DNSBL rank {rank} for {peer}")
        if not rcpts:
            self._ps(t + 0.2, f"HANGUP after {self.r.uniform(0.5, 9):.1f} from {peer} in "
                              "tests after SMTP handshake")
            self._ps(t + 0.21, f"DISCONNECT {peer}")
            return t + 0.3
        for rcpt in rcpts:
            t += self.r.uniform(0.1, 1.5)
            self._ps(t, f"NOQUEUE: reject: RCPT from {peer}: 550 5.7.1 Service unavailable; "
                        f"client [{c.addr}] blocked using {DNSBL}; from=<{mail_from}>, "
                        f"to=<{rcpt}>, proto=ESMTP, helo=<{c.helo}>")
        self._ps(t + 0.1, f"DISCONNECT {peer}")
        return t + 0.2

    def session(self, t: float, c: Client, transactions: list[Transaction], *,
                tls: bool = False) -> float:
        """One connection through postscreen and smtpd; returns when it ended."""
        r = self.r
        t = self.postscreen_pass(t, c.addr, r.randint(1024, 65535), )
        pid = self.w.pid()
        smtpd = "postfix/smtpd"
        peer = f"{c.name}[{c.addr}]"
        self.w.emit(t, smtpd, pid, f"connect from {peer}")
        if tls:
            self.w.emit(t + 0.05, smtpd, pid, f"Anonymous TLS connection established from "
                        f"{peer}: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
        helo, ehlos = c.helo, 1
        rcpt_ok = rcpt_all = data_ok = data_all = 0
        for tr in transactions:
            if tr.helo and tr.helo != helo:
                helo, ehlos = tr.helo, ehlos + 1
            t += r.uniform(0.2, 2.0)
            accepted, t = self._rcpts(t, pid, peer, helo, tr)
            rcpt_all += len(tr.rcpts)
            rcpt_ok += len(accepted)
            if accepted:
                data_all += 1
                data_ok += not tr.spam
        cmds_ok = ehlos + len(transactions) + rcpt_ok + data_ok + 1
        cmds_all = ehlos + len(transactions) + rcpt_all + data_all + 1
        t += r.uniform(0.05, 0.5)
        self.w.emit(t, smtpd, pid, f"disconnect from {peer} ehlo={ehlos} "
                    f"mail={len(transactions)} rcpt={_frac(rcpt_ok, rcpt_all)} "
                    f"data={_frac(data_ok, data_all)} quit=1 "
                    f"commands={_frac(cmds_ok, cmds_all)}")
        return t

    def _rcpts(self, t: float, pid: int, peer: str, helo: str,
               tr: Transaction) -> tuple[list[str], float]:
        """RCPT rejects and the accepted recipients' message; returns them and the time."""
        r = self.r
        qid = ""
        accepted: list[str] = []
        tail = f"proto=ESMTP helo=<{helo}>"
        for rcpt in tr.rcpts:
            t += r.uniform(0.05, 0.6)
            if rcpt in tr.unknown:
                self.w.emit(t, "postfix/smtpd", pid, f"{qid or 'NOQUEUE'}: reject: RCPT from "
                            f"{peer}: {REJECT_UNKNOWN.format(rcpt=rcpt)}; "
                            f"from=<{tr.mail_from}> to=<{rcpt}> {tail}")
                continue
            if not qid:
                qid = self.w.qid()
                self.w.emit(t, "postfix/smtpd", pid, f"{qid}: client={peer}")
            accepted.append(rcpt)
        if qid:
            t = self._message(t, qid, peer, tr, accepted, tail)
        return accepted, t

    def _message(self, t: float, qid: str, peer: str, tr: Transaction, accepted: list[str],
                 tail: str) -> float:
        r, w = self.r, self.w
        cpid = w.pid()
        mid = f"{r.getrandbits(48):x}@{tr.mail_from.rpartition('@')[2] or 'localhost'}"
        t += r.uniform(0.1, 1.0)
        w.emit(t, "postfix/cleanup", cpid, f"{qid}: message-id=<{mid}>")
        size = r.randint(2000, 80000)
        t += r.uniform(0.3, 2.5)
        self._verdict(t, qid, peer, tr, accepted, mid, size)
        if tr.spam:
            amavis_id = f"{r.randint(1000, 65000)}-0{r.randint(1, 9)}"
            text = REJECT_SPAM[self.filter].format(id=amavis_id)
            w.emit(t + 0.01, "postfix/cleanup", cpid, f"{qid}: milter-reject: END-OF-MESSAGE "
                   f"from {peer}: {text}; from=<{tr.mail_from}> to=<{accepted[0]}> {tail}")
            return t + 0.02
        w.emit(t + 0.01, "postfix/qmgr", 1234,
               f"{qid}: from=<{tr.mail_from}>, size={size}, nrcpt={len(accepted)} (queue active)")
        lpid = w.pid()
        last = t + 0.01
        for rcpt in accepted:
            d = r.uniform(0.05, 0.4)
            last += d
            w.emit(last, "postfix/lmtp", lpid, f"{qid}: to=<{rcpt}>, relay={LMTP_RELAY}, "
                   f"delay={last - t + 1.5:.1f}, delays=1.4/0.01/0.01/{d:.2f}, dsn=2.0.0, "
                   f"status=sent (250 2.0.0 <{rcpt}> {r.getrandbits(40):x} Saved)")
        w.emit(last + 0.01, "postfix/qmgr", 1234, f"{qid}: removed")
        return t + 0.02

    def _verdict(self, t: float, qid: str, peer: str, tr: Transaction, accepted: list[str],
                 mid: str, size: int) -> None:
        """The spam filter's own lines for the message, as its milter scans it."""
        r, w = self.r, self.w
        score = r.uniform(8, 30) if tr.spam else r.uniform(-3, 3)
        secs = r.uniform(0.2, 2.4)
        if self.filter == SPAMD:
            pid = w.pid()
            what = "identified spam" if tr.spam else "clean message"
            w.emit(t - 0.02, "spamd", pid, f"spamd: {what} ({score:.1f}/5.0) for "
                   f"spamass-milter:109 in {secs:.1f} seconds, {size} bytes.")
            rules = ",".join(r.sample(RULES, 3)) if tr.spam else "none"
            w.emit(t - 0.01, "spamd", pid, f"spamd: result: {'Y' if tr.spam else '.'} "
                   f"{int(score)} - {rules} scantime={secs:.1f},size={size},"
                   f"user=spamass-milter,uid=109,required_score=5.0,rhost=::1,raddr=::1,"
                   f"rport={r.randint(30000, 60000)},mid=<{mid}>,autolearn=no "
                   "autolearn_force=no")
            return
        how = "Blocked SPAM {RejectedInbound}" if tr.spam else "Passed CLEAN {RelayedInbound}"
        addr = peer.rpartition("[")[2].rstrip("]")
        rcpts = ",".join(f"<{x}>" for x in accepted)
        w.emit(t - 0.01, "amavis", w.pid(), f"({r.randint(1000, 65000)}-0{r.randint(1, 9)}) "
               f"{how}, [{addr}]:{r.randint(1024, 65535)} [{addr}] <{tr.mail_from}> -> "
               f"{rcpts}, Queue-ID: {qid}, Message-ID: <{mid}>, mail_id: "
               f"{r.getrandbits(60):x}, Hits: {score:.3f}, size: {size}, {int(secs * 1000)} ms")


def _frac(ok: int, total: int) -> str:
    """Postfix's command count: `n` when all succeeded, `ok/total` when some failed."""
    return str(total) if ok == total else f"{ok}/{total}"
