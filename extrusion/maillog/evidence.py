"""Per-client memory of what the log shows outside the queue: refused sessions and their
HELOs, postscreen's verdicts. The joiner asks it whether a line is news before it hands
the engine a `ClientEvidence`.

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

from dataclasses import dataclass, field

from extrusion.maillog.mxlines import HANGUP, PREGREET

SESSION_SECONDS = 300.0  # Postfix's smtpd_timeout: a longer pause ends any session
REPEAT_SECONDS = 60.0  # a client's evidence is news again after this much log time
MAX_CLIENTS = 50_000
MAX_HELOS = 8
MAX_DOMAINS = 4
MAX_HELO_CHARS = 255  # a HELO longer than a host name can be is cut here


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
        self._clients: dict[str, _Client] = {}  # least recently seen first
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._clients)

    def _get(self, addr: str, t: float) -> _Client:
        c = self._clients.pop(addr, None)
        if c is None or t - c.last > SESSION_SECONDS:
            pregreet = c.pregreet if c is not None else float("-inf")
            c = _Client(first=t, last=t, pregreet=pregreet)
            if len(self._clients) >= self.max_clients:
                del self._clients[next(iter(self._clients))]
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
        if helo and helo not in c.helos and len(c.helos) < MAX_HELOS:
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
