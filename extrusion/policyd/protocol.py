"""The policy delegation server: one protocol instance per Postfix connection.

Postfix keeps a connection open and sends many requests over it, possibly
several before reading a reply. Each complete request is answered in order
with `action=...` and an empty line. In trouble (hostile input, a client
outside `allowed_clients`) the server logs one line and disconnects without
a reply, as SMTPD_POLICY_README asks; other connections are never affected.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from extrusion.policyd.constants import REPLY_TEMPLATE
from extrusion.policyd.metrics import Metrics
from extrusion.policyd.reactortypes import Clock, DelayedCall
from extrusion.policyd.request import BadInput, PolicyRequest, RequestParser
from extrusion.policyd.responder import Responder
from extrusion.scoring.keys import ip_of

log = logging.getLogger("extrusion.policyd")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Refused addresses remembered so that each is logged once, not per connection.
_MAX_REMEMBERED_REFUSALS = 1024


def _peer(addr: IAddress) -> str:
    if isinstance(addr, (IPv4Address, IPv6Address)):
        return f"{addr.host}:{addr.port}"
    return str(getattr(addr, "name", None) or "unix")


class PolicyProtocol(Protocol):
    """Parses requests incrementally and writes one reply per request, in order."""

    factory: PolicyFactory

    def __init__(self, factory: PolicyFactory, peer: str) -> None:
        self.factory = factory
        self.peer = peer
        self.parser = RequestParser(factory.max_line, factory.max_attributes)
        self.closing = False
        self._clock = factory.reactor
        self._last_data = 0.0
        self._idle_call: DelayedCall | None = None

    def _out(self) -> Any:
        # The transport's zope interface is opaque to mypy; this is the one place we touch it.
        return self.transport

    def connectionMade(self) -> None:
        self.factory.opened(self)
        self._last_data = self._clock.seconds()
        self._arm_idle(self.factory.idle_timeout)

    # Idle timeout without a timer reset per chunk: remember the time of the last
    # data and, when the timer fires early, re-arm it for the time remaining.
    def _arm_idle(self, delay: float) -> None:
        if self.factory.idle_timeout > 0:
            self._idle_call = self._clock.callLater(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_call = None
        left = self._last_data + self.factory.idle_timeout - self._clock.seconds()
        if left > 0:
            self._arm_idle(left)
        else:
            self.timeoutConnection()

    def _disarm_idle(self) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self._last_data = self._clock.seconds()
        try:
            requests = self.parser.feed(data)
        except BadInput as exc:
            self._reply(exc.completed)
            self.refuse(exc.kind, str(exc))
            return
        if requests:
            self._reply(requests)
        if self.factory.draining and not self.parser.pending:
            self.close()

    def _reply(self, requests: list[PolicyRequest]) -> None:
        if not requests:
            return
        answer = self.factory.responder.answer
        out = "".join([REPLY_TEMPLATE.format(answer(r)) for r in requests])
        self._out().write(out.encode("ascii", "replace"))

    def refuse(self, kind: str, detail: str) -> None:
        """Log once, count, and hang up without a reply (the protocol's way to say "trouble")."""
        log.warning("policy client %s: %s: %s; closing", self.peer, kind, detail)
        self.factory.metrics.bad_input.labels(kind).inc()
        self.close()

    def close(self) -> None:
        if not self.closing:
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
        self._disarm_idle()
        if self.parser.pending and not self.closing:
            log.warning("policy client %s disconnected in the middle of a request", self.peer)
            self.factory.metrics.bad_input.labels("disconnect_mid_request").inc()
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
    ) -> None:
        self.responder = responder
        self.metrics = metrics
        self.reactor = reactor
        self.configure(
            allowed_clients=allowed_clients, max_line=max_line,
            max_attributes=max_attributes, idle_timeout=idle_timeout,
        )
        self.connections: set[PolicyProtocol] = set()
        self.draining = False
        self._drained: defer.Deferred[None] | None = None
        self._refused_seen: set[str] = set()

    def configure(
        self,
        *,
        allowed_clients: tuple[str, ...],
        max_line: int,
        max_attributes: int,
        idle_timeout: float,
    ) -> None:
        """(Re)apply settings; open connections keep their parser limits until they reconnect."""
        self.allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allowed_clients
        )
        self.max_line = max_line
        self.max_attributes = max_attributes
        self.idle_timeout = idle_timeout

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
        return PolicyProtocol(self, _peer(addr))

    def opened(self, proto: PolicyProtocol) -> None:
        self.connections.add(proto)
        self.metrics.connections.inc()

    def closed(self, proto: PolicyProtocol) -> None:
        if proto in self.connections:
            self.connections.discard(proto)
            self.metrics.connections.dec()
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

