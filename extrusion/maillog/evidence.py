"""What the log shows about clients outside the queue, as `ClientEvidence` for the engine:
refused sessions and their HELOs, postscreen's verdicts, spam filters' verdicts (joined to
their message by queue id or Message-ID). `EvidenceJoin` is the joiner's part for these;
`ClientTracker` its per-client memory, which says whether a line is news.

Postfix logs a session's HELO on every reject line (`helo=<…>`) but never the session
itself (without `smtpd_client_port_logging` nothing tells two sessions of one client
apart). A client's lines with no more than `SESSION_SECONDS` between them are taken as
one session: its different HELOs are "several HELOs in one session", as the milter sees
them. A line is news when it brings a HELO or MAIL FROM domain the session had not shown,
or when `REPEAT_SECONDS` passed since the client's last evidence: a bot refused again and
again keeps giving evidence (once a minute, not once per line), while the engine counts
each HELO anomaly kind only once per its HELO memory, so nothing is counted twice.

Memory is bounded: at most `MAX_CLIENTS` clients (the least recently seen go), each with
at most `MAX_HELOS` HELOs and `MAX_DOMAINS` envelope domains per session.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from extrusion.maillog.mxlines import HANGUP, PREGREET
from extrusion.maillog.records import (
    FAILED_COMMANDS,
    ClientVerdict,
    FilterVerdict,
    MessageIdSeen,
)
from extrusion.scoring.events import ClientEvidence, Seen

SESSION_SECONDS = 300.0  # Postfix's smtpd_timeout: a longer pause ends any session
REPEAT_SECONDS = 60.0  # a client's evidence is news again after this much log time
MAX_CLIENTS = 50_000
MAX_HELOS = 8
MAX_DOMAINS = 4
MAX_HELO_CHARS = 255  # a HELO longer than a host name can be is cut here


def _tail(helo: str) -> str:
    """The last two labels of a HELO, lower-case. The log cannot tell sessions apart, so
    HELOs that differ only below one domain (a big provider's hosts behind one address,
    `eur05-vi1-obe.outbound.protection.outlook.com` and `eur05-am5-obe…`) count as one:
    only a change of domain, what a bot rotating forged names shows, is "several"."""
    return ".".join(helo.lower().rstrip(".").rsplit(".", 2)[-2:])


@dataclass
class _Client:
    first: float
    last: float
    said: float = float("-inf")  # when its last evidence went to the engine
    helos: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    pregreet: float = float("-inf")
    verdicts: dict[str, float] = field(default_factory=dict)  # postscreen kind -> when


class ClientTracker:
    def __init__(self, max_clients: int = MAX_CLIENTS) -> None:
        self.max_clients = max_clients
        # Least recently seen first; an OrderedDict for the same reason as `_remember()`.
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._clients)

    def _get(self, addr: str, t: float) -> _Client:
        c = self._clients.pop(addr, None)
        if c is None or t - c.last > SESSION_SECONDS:
            pregreet = c.pregreet if c is not None else float("-inf")
            c = _Client(first=t, last=t, pregreet=pregreet)
            if len(self._clients) >= self.max_clients:
                self._clients.popitem(last=False)
                self.evicted += 1
        c.last = max(c.last, t)
        self._clients[addr] = c
        return c

    def session(self, t: float, addr: str, helo: str, envelope_from: str
                ) -> tuple[str, ...] | None:
        """A refused line of `addr`'s session: the session's HELOs when it is news, else None."""
        c = self._get(addr, t)
        news = False
        helo = helo[:MAX_HELO_CHARS]
        if helo and len(c.helos) < MAX_HELOS and _tail(helo) not in map(_tail, c.helos):
            c.helos.append(helo)
            news = True
        domain = envelope_from.rpartition("@")[2].lower()[:MAX_HELO_CHARS]
        if domain and domain not in c.domains and len(c.domains) < MAX_DOMAINS:
            c.domains.append(domain)
            news = True
        if news or t - c.said >= REPEAT_SECONDS:
            c.said = t
            return tuple(c.helos)
        return None

    def postscreen(self, t: float, addr: str, kind: str) -> bool:
        """Whether postscreen's verdict `kind` on `addr` is news: each kind once a minute
        per client, and HANGUP only after that client's PREGREET (a real MTA hanging up
        while postscreen waits is impatience, a bot that talked first and left is not)."""
        c = self._get(addr, t)
        if kind == PREGREET:
            c.pregreet = t
        elif kind == HANGUP and t - c.pregreet > SESSION_SECONDS:
            return False
        if t - c.verdicts.get(kind, float("-inf")) < REPEAT_SECONDS:
            return False
        c.verdicts[kind] = t  # at most one per postscreen verdict word
        return True


# --- from records to events ------------------------------------------------------------

# Message-IDs (and verdicts handed on) remembered, to join a spam filter's verdict that
# names only the Message-ID and to count one verdict per message.
MESSAGE_IDS_KEPT = 50_000


class EvidenceSink(Protocol):
    def evidence(self, event: ClientEvidence) -> None: ...


# (host, queue id) -> the message's client address, SASL user and envelope sender, when
# the joiner knows its client; None otherwise.
# (client address, client name, SASL user, envelope sender) of a message being joined.
MessageLookup = Callable[[str, str], "tuple[str, str, str, str | None] | None"]


@dataclass
class EvidenceStats:
    evidence: int = 0  # ClientEvidence handed on (refused sessions, postscreen, filters)
    verdicts_unjoined: int = 0  # spam verdicts whose message or client was not in the log


class EvidenceJoin:
    """The joiner's part for evidence about clients: refused lines, postscreen's and the
    spam filters' verdicts in, `ClientEvidence` out (news only, see `ClientTracker`)."""

    def __init__(self, sink: EvidenceSink, sender: Callable[[str, str], str], mta: str,
                 client_evidence: bool, lookup: MessageLookup) -> None:
        self.sink = sink
        self.sender = sender
        self.mta = mta  # "" = the host of each line
        self.client_evidence = client_evidence
        self.lookup = lookup
        self.clients = ClientTracker()
        self.stats = EvidenceStats()
        # Bounded by `_remember()`, oldest first: OrderedDicts (see there).
        self._mids: OrderedDict[str, str] = OrderedDict()  # "host message-id" -> queue id
        self._judged: OrderedDict[str, None] = OrderedDict()  # "host queue-id" handed on
        # A filter milter (spamass-milter, amavis as a milter) logs its verdict before
        # qmgr logs the envelope sender: such a verdict waits for it (forwarded mail is
        # told by its envelope), or for the message's end. "host queue-id" -> (time, it).
        self.early: OrderedDict[str, tuple[float, FilterVerdict]] = OrderedDict()

    def _emit(self, event: ClientEvidence) -> None:
        self.stats.evidence += 1
        self.sink.evidence(event)

    def session(self, t: float, host: str, addr: str, user: str, helo: str,
                envelope_from: str, recipient: str, client_name: str = "") -> None:
        """A refused line of a client's session: its HELOs (judged as the milter's and the
        policy server's are, with the client's verified name: a big provider's HELO from
        its own servers is no lie) and, in mx mode, the client itself."""
        helos = self.clients.session(t, addr, helo, envelope_from)
        if helos is None:
            return
        self._emit(ClientEvidence(
            time=t, sender=self.sender(addr, user), client_addr=addr, kind=Seen.SESSION,
            client_name=client_name[:MAX_HELO_CHARS], helos=helos, envelope_from=envelope_from,
            recipients=(recipient,) if recipient else (), mta=self.mta or host,
            client_evidence=self.client_evidence))

    def verdict(self, t: float, host: str, r: ClientVerdict) -> None:
        if r.kind == FAILED_COMMANDS:
            self.session(t, host, r.client_addr, "", "", "", "")
            return
        if not self.clients.postscreen(t, r.client_addr, r.kind):
            return
        self._emit(ClientEvidence(
            time=t, sender=self.sender(r.client_addr, ""), client_addr=r.client_addr,
            kind=Seen.POSTSCREEN, detail=r.detail or r.kind, mta=self.mta or host,
            client_evidence=self.client_evidence))

    def message_id(self, host: str, r: MessageIdSeen) -> None:
        if r.message_id:
            self.remember_message_id(host, r.message_id, r.queue_id)

    def remember_message_id(self, host: str, message_id: str, qid: str) -> None:
        """A message's Message-ID, for a spam filter's verdict that names only that."""
        _remember(self._mids, host + " " + message_id, qid)

    def filter_verdict(self, t: float, host: str, r: FilterVerdict) -> None:
        """A spam filter's verdict, joined to its message by queue id or Message-ID (else
        to the client the filter names); only "spam" is evidence, once per message."""
        qid = r.queue_id or self._mids.get(host + " " + r.message_id, "")
        if not r.spam or (qid and host + " " + qid in self._judged):
            return
        known = self.lookup(host, qid) if qid else None
        addr, name, user, env = known if known is not None else (r.client_addr, "", "", None)
        if not addr and not user:
            self.stats.verdicts_unjoined += 1
            return
        if r.envelope_from is not None:
            env = r.envelope_from
        elif env is None and known is not None:
            _remember(self.early, host + " " + qid, (t, r))
            return
        if qid:
            _remember(self._judged, host + " " + qid, None)
        detail = r.filter + (f" score {r.score:g}" if r.score is not None else "")
        self._emit(ClientEvidence(
            time=t, sender=self.sender(addr, user), client_addr=addr, kind=Seen.SPAM_VERDICT,
            client_name=name[:MAX_HELO_CHARS], envelope_from=env or "", detail=detail,
            queue_id=qid, mta=self.mta or host,
            client_evidence=self.client_evidence))


    def envelope_known(self, host: str, qid: str) -> None:
        """The message's envelope sender is in: a verdict waiting for it is judged now."""
        if not self.early:  # nearly always: no spam filter's verdict came first
            return
        early = self.early.pop(host + " " + qid, None)
        if early is not None:
            self.filter_verdict(early[0], host, early[1])

    def message_gone(self, host: str, qid: str) -> None:
        """The message ends (removed, aged out) without an envelope sender logged: its
        waiting verdict is judged without one, as before the wait."""
        if not self.early:
            return
        early = self.early.pop(host + " " + qid, None)
        if early is not None:
            self.filter_verdict(early[0], host, replace(early[1], envelope_from=""))


_V = TypeVar("_V")


def _remember(d: OrderedDict[str, _V], key: str, value: _V) -> None:
    # The oldest goes by popitem(): with a plain dict, `next(iter(d))` after deletions at
    # its front walks every deleted slot before it (until the dict is next resized), so
    # once full, each new Message-ID cost a walk through tens of thousands of them.
    if key not in d and len(d) >= MESSAGE_IDS_KEPT:
        d.popitem(last=False)
    d[key] = value
