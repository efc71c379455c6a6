"""Postfix's `smtpd_milter_maps`, served: the milter only where it adds evidence.

Postfix looks up each SMTP client's address in `smtpd_milter_maps` when the
client connects (Postfix 3.2 and later). extrusion answers over Postfix's
socketmap protocol (`socketmap_table(5)`: a netstring "NAME KEY" in, a
netstring "OK VALUE", "NOTFOUND ", "TEMP REASON" or "PERM REASON" out, many
per connection):

- a client under attention (`extrusion.scoring.attention`: any state but ok,
  or on probation), or one whose address or sender key the engine cannot
  judge yet: `NOTFOUND`, so Postfix uses `smtpd_milters`, which attaches the
  milter (and whatever other milters the admin lists there);
- any other client: `OK DISABLE`, no milter at all, or `OK <attach_others>`
  when the admin keeps other milters (OpenDKIM) for everyone.

Postfix treats a failed lookup (extrusion down, a TEMP or PERM answer, a
refused connection) like NOTFOUND: it logs a warning and attaches
`smtpd_milters` (measured, tests/test_milter_attach_postfix.py). Every doubt
therefore ends with the milter attached, never with a session unseen that
should have been seen.

Postfix asks before any SASL login, so only the address is known: a client is
attended to when its address is one a sender under attention last came from,
or when the address's own key (`ip:` or a `[[customers]]` range's
`customer:`) is under attention. An address never seen is not: the policy
delegation still judges its mail, and the milter joins as soon as the engine
has an eye on it. The list is taken from the engine at most every
`attach_refresh_seconds`, on the reactor thread that answers; the engine keeps
it as senders change (`AttentionIndex`), so taking it costs the senders under
attention, not a pass over every sender in memory under the engine's lock.

No pymilter here: this runs on the Twisted reactor of `extrusion serve`,
which wires it (`extrusion.service`).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import protocol
from twisted.protocols.policies import TimeoutMixin

from extrusion.keys import parse_address
from extrusion.scoring.api import EngineAPI
from extrusion.scoring.attention import Attention

log = logging.getLogger("extrusion.milter.attach")

#: The table name main.cf gives: smtpd_milter_maps = socketmap:inet:HOST:PORT:milters
MAP_NAME = "milters"
#: One request is "milters " and an address: well under this (netstring payload bytes).
MAX_REQUEST = 256
#: A length prefix longer than this many digits is no request of ours.
MAX_LENGTH_DIGITS = len(str(MAX_REQUEST))
#: Postfix's word for "no milter for this client" (postconf(5), smtpd_milter_maps).
DISABLE = "DISABLE"
NOT_FOUND = b"NOTFOUND "
#: Postfix keeps a socketmap connection open between lookups; one idle this long is closed.
IDLE_SECONDS = 300.0
#: Refused connections and garbage logged one by one up to this many, then one in 1,000:
#: a hostile local process cannot fill the log.
LOGGED_REFUSALS = 10


class RequestError(ValueError):
    """Bytes that are no socketmap request: the connection is answered PERM and closed."""


def netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


def take_requests(buffer: bytearray) -> list[bytes]:
    """The complete netstrings at the start of `buffer`, removed from it.

    Raises RequestError for anything but digits, ':', at most MAX_REQUEST bytes
    and ','; an incomplete netstring stays in the buffer for the next read."""
    found: list[bytes] = []
    while buffer:
        colon = buffer.find(b":", 0, MAX_LENGTH_DIGITS + 1)
        if colon < 0:
            if len(buffer) > MAX_LENGTH_DIGITS or not bytes(buffer).isdigit():
                raise RequestError("not a netstring")
            break
        digits = bytes(buffer[:colon])
        if not digits.isdigit():
            raise RequestError("not a netstring")
        length = int(digits)
        if length > MAX_REQUEST:
            raise RequestError(f"request of {length} bytes (at most {MAX_REQUEST})")
        end = colon + 1 + length
        if len(buffer) <= end:
            break
        if buffer[end] != ord(","):
            raise RequestError("netstring not ended by ','")
        found.append(bytes(buffer[colon + 1:end]))
        del buffer[:end + 1]
    return found


class Attendance:
    """Answers lookups from the engine's list of senders under attention."""

    def __init__(self, engine: Callable[[], EngineAPI | None], *, others: str = "",
                 refresh_seconds: float = 1.0, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self.unattended = b"OK " + (others.strip() or DISABLE).encode()
        self._attention = Attention()
        self._taken = float("-inf")
        self.attached = 0  # lookups answered with the milter (NOTFOUND), for tests and logs
        self.detached = 0

    def answer(self, request: bytes) -> bytes:
        """The reply payload for one request payload ("NAME KEY")."""
        name, _, key = request.partition(b" ")
        if name.decode("ascii", "replace") != MAP_NAME:
            return b"PERM unknown map name (extrusion serves socketmap:...:%s)" % (
                MAP_NAME.encode())
        try:
            attend = self._attends(key.decode("ascii"))
        except UnicodeDecodeError:
            attend = True  # no address: smtpd_milters, as for anything not understood
        except Exception as exc:  # the engine failed: Postfix attaches smtpd_milters
            log.warning("milter map lookup failed: %s", exc)
            return b"TEMP engine failure"
        if attend:
            self.attached += 1
            return NOT_FOUND
        self.detached += 1
        return self.unattended

    def _attends(self, key: str) -> bool:
        engine = self.engine()
        ip = parse_address(key)
        if engine is None or ip is None:
            return True  # the engine cannot say (not loaded yet), or no address: attach
        now = self.clock()
        if now - self._taken >= self.refresh_seconds or now < self._taken:
            self._attention = engine.attention()
            self._taken = now
        addr = str(ip)
        attention = self._attention
        if addr in attention.addresses:
            return True
        return bool(attention.keys) and engine.sender_key(client_addr=addr) in attention.keys


class MilterMapProtocol(protocol.Protocol, TimeoutMixin):
    """One connection from a Postfix process; requests answered in order."""

    def __init__(self, factory: MilterMapFactory) -> None:
        self.factory = factory
        self._buffer = bytearray()

    def _out(self) -> Any:
        # The transport's zope interface is opaque to mypy.
        return self.transport

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.setTimeout(IDLE_SECONDS)  # type: ignore[no-untyped-call]

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()  # type: ignore[no-untyped-call]
        self._buffer += data
        try:
            requests = take_requests(self._buffer)
        except RequestError as exc:
            self._refuse(str(exc))
            return
        if requests:
            self._out().write(b"".join(
                netstring(self.factory.attendance.answer(r)) for r in requests))

    def _refuse(self, why: str) -> None:
        self.factory.refused(f"{why} from {self._out().getPeer()}; closing the connection")
        self._buffer.clear()
        self._out().write(netstring(b"PERM " + why.encode()))
        self._out().loseConnection()

    def timeoutConnection(self) -> None:
        self._out().loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)  # type: ignore[no-untyped-call]
        self.factory.connections -= 1


class MilterMapFactory(protocol.Factory):
    def __init__(self, attendance: Attendance, *, allowed_clients: tuple[str, ...] = (),
                 max_connections: int = 1000) -> None:
        self.attendance = attendance
        self.networks = [ipaddress.ip_network(n, strict=False) for n in allowed_clients]
        self.max_connections = max_connections
        self.connections = 0
        self.refusals = 0

    def buildProtocol(self, addr: Any) -> MilterMapProtocol | None:
        # Returning None closes the connection unanswered: Postfix's lookup fails and it
        # attaches smtpd_milters, so a flood costs the milter's work, never mail.
        if not self.allows(addr):
            self.refused(f"refused {addr}, outside [policyd] allowed_clients")
            return None
        if self.connections >= self.max_connections:
            self.refused(f"{self.connections} connections open; refusing another")
            return None
        return MilterMapProtocol(self)

    def refused(self, what: str) -> None:
        self.refusals += 1
        if self.refusals <= LOGGED_REFUSALS or self.refusals % 1000 == 0:
            log.warning("milter map: %s (%d refused so far)", what, self.refusals)

    def allows(self, peer: Any) -> bool:
        """A unix socket's peer is whoever the file mode lets in; TCP peers by network."""
        host = getattr(peer, "host", None)
        if host is None or not self.networks:
            return True
        ip = parse_address(str(host).split("%", 1)[0])
        return ip is not None and any(ip in net for net in self.networks)
