"""The policy delegation server: one protocol instance per Postfix connection.

Postfix keeps a connection open and sends many requests over it, possibly
several before reading a reply. Each complete request is answered in order
with `action=...` and an empty line. In trouble (hostile input, a client
outside `allowed_clients`) the server logs one line and disconnects without
a reply, as SMTPD_POLICY_README asks; other connections are never affected.

Bounded in time and number: a request must be complete `request_timeout`
seconds after its first byte (Postfix writes it at once; a slowloris trickles
it), a connection silent for `idle_timeout` or open for `max_connection_seconds`
is closed between requests (both longer than Postfix's own max_idle 300 s and
max_ttl 1000 s, so Postfix always hangs up first), and one client address holds
at most `max_connections_per_client`. A client that half-closes after its
request still gets the answer. Warnings are rate-limited per client address.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from extrusion.netaddr import IPNetwork, ip_of, networks
from extrusion.policyd.clientlog import ClientWarnings
from extrusion.policyd.constants import REPLY_TEMPLATE
from extrusion.policyd.metrics import Metrics
from extrusion.policyd.reactortypes import Clock, DelayedCall
from extrusion.policyd.replysend import direct_socket, send_reply
from extrusion.policyd.request import BadInput, PolicyRequest, RequestParser
from extrusion.policyd.responder import Responder
from extrusion.scoring.helo import safe_text

log = logging.getLogger("extrusion.policyd")


#: Refused addresses remembered so that each is logged once, not per connection.
_MAX_REMEMBERED_REFUSALS = 1024


@functools.lru_cache(maxsize=1024)
def _reply_bytes(action: str) -> bytes:
    """The reply line for an action, encoded once: nearly every answer is one of a few
    (DUNNO, a restrained sender's line, a HELO note), formatted and encoded anew for
    each request before."""
    return REPLY_TEMPLATE.format(action).encode("ascii", "replace")


def _peer(addr: IAddress) -> str:
    if isinstance(addr, (IPv4Address, IPv6Address)):
        return f"{addr.host}:{addr.port}"
    return str(getattr(addr, "name", None) or "unix")


def _host(addr: IAddress) -> str | None:
    """The client address connections are counted under; None for a unix socket."""
    if isinstance(addr, (IPv4Address, IPv6Address)):
        return str(addr.host)
    return None


@implementer(IHalfCloseableProtocol)
class PolicyProtocol(Protocol):
    """Parses requests incrementally and writes one reply per request, in order."""

    factory: PolicyFactory

    def __init__(self, factory: PolicyFactory, peer: str, host: str | None = None) -> None:
        self.factory = factory
        self.peer = peer
        self.host = host
        self.parser = RequestParser(factory.max_line, factory.max_attributes)
        self.closing = False
        self._clock = factory.reactor
        self._opened = 0.0
        self._last_data = 0.0
        self._request_started: float | None = None
        self._idle_call: DelayedCall | None = None
        self._armed_for = 0.0
        self._sock: Any = None
        self._unsent: list[bytes] = []

    def _out(self) -> Any:
        # The transport's zope interface is opaque to mypy; this is the one place we touch it.
        return self.transport

    def connectionMade(self) -> None:
        self._sock = direct_socket(self.transport)
        self.factory.opened(self)
        self._opened = self._last_data = self._clock.seconds()
        self._arm()

    # Timeouts without a timer reset per chunk: remember when things happened and,
    # when the one timer fires early, re-arm it for the nearest deadline left.
    def _deadline(self) -> tuple[float, str] | None:
        f = self.factory
        found: list[tuple[float, str]] = []
        if f.idle_timeout > 0:
            found.append((self._last_data + f.idle_timeout, "idle"))
        request_due = None
        if self._request_started is not None and f.request_timeout > 0:
            request_due = self._request_started + f.request_timeout
            found.append((request_due, "request"))
        if f.max_connection_seconds > 0:
            # Never in the middle of a request: then its own deadline comes first.
            due = self._opened + f.max_connection_seconds
            found.append((max(due, request_due or due), "lifetime"))
        return min(found) if found else None

    def _arm(self) -> None:
        deadline = self._deadline()
        if deadline is not None:
            self._armed_for = deadline[0]
            delay = max(deadline[0] - self._clock.seconds(), 0.0)
            self._idle_call = self._clock.callLater(delay, self._check)

    def _check(self) -> None:
        self._idle_call = None
        deadline = self._deadline()
        if deadline is None or self.closing:
            return
        due, kind = deadline
        if due > self._clock.seconds():
            self._arm()
        elif kind == "request":
            self.refuse("request_timeout",
                        f"request not complete {self.factory.request_timeout:g}s after it began")
        elif kind == "lifetime":
            log.info("policy client %s connected for %gs; closing", self.peer,
                     self.factory.max_connection_seconds)
            self.close()
        else:
            self.timeoutConnection()

    def _disarm_idle(self) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        now = self._last_data = self._clock.seconds()
        try:
            requests = self.parser.feed(data)
        except BadInput as exc:
            self._reply(exc.completed)
            self.refuse(exc.kind, str(exc))
            return
        if requests:
            self._reply(requests)
        if not self.parser.pending:
            self._request_started = None
        elif self._request_started is None or requests:
            # A request began (the rest of this chunk after complete ones counts as new).
            self._request_started = now
            if self.factory.request_timeout > 0 and (
                now + self.factory.request_timeout < self._armed_for
            ):
                self._disarm_idle()
                self._arm()
        if self.factory.draining and not self.parser.pending:
            self.close()

    def readConnectionLost(self) -> None:
        """The client half-closed (sent its last request and shut down writing): the
        answers already written still go out before we close."""
        if self.parser.pending and not self.closing:
            self._lost_mid_request()
        self.close()

    def writeConnectionLost(self) -> None:
        self.close()

    def _lost_mid_request(self) -> None:
        self.factory.warn(self, "policy client %s disconnected in the middle of a request",
                          self.peer)
        self.factory.metrics.bad_input.labels("disconnect_mid_request").inc()

    def _reply(self, requests: list[PolicyRequest]) -> None:
        if not requests:
            return
        answer = self.factory.responder.answer
        data = b"".join([_reply_bytes(answer(r)) for r in requests])
        if self._sock is None:
            self._out().write(data)
            return
        # Sent at the end of this reactor turn, with the other connections' replies, as
        # Twisted's write() sent them: the clients wake once for several, not per reply.
        if not self._unsent:
            self.factory.reply_later(self)
        self._unsent.append(data)

    def send_unsent(self) -> None:
        """Send the replies answered this reactor turn (called once per turn)."""
        if self._unsent:
            data = b"".join(self._unsent)
            self._unsent = []
            send_reply(self._out(), self._sock, data)

    def refuse(self, kind: str, detail: str) -> None:
        """Log once, count, and hang up without a reply (the protocol's way to say "trouble")."""
        self.factory.warn(self, "policy client %s: %s: %s; closing", self.peer, kind,
                          safe_text(detail))
        self.factory.metrics.bad_input.labels(kind).inc()
        self.close()

    def close(self) -> None:
        if not self.closing:
            self.send_unsent()  # the answers come before the hang-up
            self.closing = True
            self._disarm_idle()
            self._out().loseConnection()

    def timeoutConnection(self) -> None:
        if self.parser.pending:
            self.refuse("idle_mid_request", f"no data for {self.factory.idle_timeout:g}s")
        else:
            log.info("policy client %s idle for %gs; closing", self.peer, self.factory.idle_timeout)
            self.close()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._unsent = []
        self._disarm_idle()
        if self.parser.pending and not self.closing:
            self._lost_mid_request()
        self.closing = True
        self.factory.closed(self)


class PolicyFactory(Factory):
    """Shared settings, the allowed-client check and the set of open connections (for drain)."""

    def __init__(
        self,
        responder: Responder,
        metrics: Metrics,
        reactor: Clock,
        *,
        allowed_clients: tuple[str, ...],
        max_line: int,
        max_attributes: int,
        idle_timeout: float,
        request_timeout: float = 0.0,
        max_connection_seconds: float = 0.0,
        max_connections_per_client: int = 0,
    ) -> None:
        self.responder = responder
        self.metrics = metrics
        self.reactor = reactor
        self.configure(
            allowed_clients=allowed_clients, max_line=max_line,
            max_attributes=max_attributes, idle_timeout=idle_timeout,
            request_timeout=request_timeout, max_connection_seconds=max_connection_seconds,
            max_connections_per_client=max_connections_per_client,
        )
        self.warnings = ClientWarnings(log, reactor.seconds)
        self.per_client: dict[str, int] = {}
        self.connections: set[PolicyProtocol] = set()
        self.draining = False
        self._drained: defer.Deferred[None] | None = None
        self._refused_seen: set[str] = set()
        self._unsent: list[PolicyProtocol] = []

    def configure(
        self,
        *,
        allowed_clients: tuple[str, ...],
        max_line: int,
        max_attributes: int,
        idle_timeout: float,
        request_timeout: float = 0.0,
        max_connection_seconds: float = 0.0,
        max_connections_per_client: int = 0,
    ) -> None:
        """(Re)apply settings; open connections keep their parser limits until they reconnect.

        A timeout or limit of 0 is off."""
        self.allowed: tuple[IPNetwork, ...] = networks(allowed_clients)
        self.max_line = max_line
        self.max_attributes = max_attributes
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.max_connection_seconds = max_connection_seconds
        self.max_connections_per_client = max_connections_per_client

    def is_allowed(self, addr: IAddress) -> bool:
        if not isinstance(addr, (IPv4Address, IPv6Address)):
            return True  # unix socket: the file's permissions decide
        ip = ip_of(addr.host.split("%", 1)[0])
        return ip is not None and any(ip in net for net in self.allowed)

    def buildProtocol(self, addr: IAddress) -> PolicyProtocol | None:  # type: ignore[override]
        if not self.is_allowed(addr):
            self.metrics.refused_clients.inc()
            host = getattr(addr, "host", "?")
            seen = self._refused_seen
            if host not in seen and len(seen) < _MAX_REMEMBERED_REFUSALS:
                seen.add(host)
                log.warning("policy client %s is not in allowed_clients; refusing", host)
            return None  # Twisted closes the connection
        client = _host(addr)
        cap = self.max_connections_per_client
        if client is not None and cap > 0 and self.per_client.get(client, 0) >= cap:
            self.metrics.bad_input.labels("too_many_connections").inc()
            self.warnings.warn(client, "policy client %s already has %d connections; refusing",
                               client, cap)
            return None
        return PolicyProtocol(self, _peer(addr), client)

    def reply_later(self, proto: PolicyProtocol) -> None:
        """Have `proto`'s replies sent at the end of this reactor turn."""
        if not self._unsent:
            self.reactor.callLater(0, self._send_unsent)
        self._unsent.append(proto)

    def _send_unsent(self) -> None:
        unsent, self._unsent = self._unsent, []
        for proto in unsent:
            proto.send_unsent()

    def warn(self, proto: PolicyProtocol, fmt: str, *args: object) -> None:
        """A warning about a client, rate-limited per client address."""
        self.warnings.warn(proto.host or proto.peer, fmt, *args)

    def opened(self, proto: PolicyProtocol) -> None:
        self.connections.add(proto)
        self.metrics.connections.inc()
        if proto.host is not None:
            self.per_client[proto.host] = self.per_client.get(proto.host, 0) + 1

    def closed(self, proto: PolicyProtocol) -> None:
        if proto in self.connections:
            self.connections.discard(proto)
            self.metrics.connections.dec()
            if proto.host is not None:
                left = self.per_client.get(proto.host, 1) - 1
                if left > 0:
                    self.per_client[proto.host] = left
                else:
                    self.per_client.pop(proto.host, None)
        self.warnings.sweep()
        if self._drained is not None and not self.connections:
            d, self._drained = self._drained, None
            if not d.called:  # it may have been cancelled by the drain timeout
                d.callback(None)

    def drain(self) -> defer.Deferred[None]:
        """Stop serving: idle connections close now, busy ones after their request's answer.

        Fires when every connection is gone. The listening port is stopped by the
        caller (the endpoint service) so no new connection arrives meanwhile.
        """
        self.draining = True
        if not self.connections:
            return defer.succeed(None)
        self._drained = defer.Deferred()
        d = self._drained
        for proto in list(self.connections):
            if not proto.parser.pending:
                proto.close()
        return d

