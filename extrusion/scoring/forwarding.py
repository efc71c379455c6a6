"""Forwarded mail, judged from evidence a sender cannot forge cheaply.

A forwarder passes on whatever reaches it, spam included, so our spam
filter's refusals of forwarded mail say little about the forwarder. Counting
`Received` headers cannot tell: a bot writes five of them for free, and
Microsoft 365 puts seven on its own direct spam. What counts here:

- an SRS envelope sender (`SRS0=hash=TT=orig.example=user@forwarder.example`)
  whose forwarder domain is the connecting client's own (its verified
  reverse name), naming a different original domain;
- a `Received` chain whose first hop below ours was written *by* the
  connecting client (its reverse name) and names a different origin: a
  public address that is not the client's, from another operator, relayed
  without authentication (an authenticated hop is a submission, not a relay).

Everything here is pure and never raises on wire text; headers are cut to
MAX_RECEIVED_CHARS and at most MAX_RECEIVED_KEPT of them are looked at.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence

from extrusion.netaddr import ip_of
from extrusion.scoring.helo import address_domain, is_lan_address, registered_domain
from extrusion.scoring.providers import provider_family

# Our own Received header and the one below it are all the judgement needs; a
# few more allow for an MTA that adds a second header of its own (a content filter).
MAX_RECEIVED_KEPT = 4
MAX_RECEIVED_CHARS = 512  # of one Received header: its from/by clauses come first
_SRS0 = "srs0="
_SRS1 = "srs1="
_NO_NAME = frozenset({"", "unknown"})

_FROM = re.compile(r"^\s*from\s+(\S+)(?:\s+\(([^)]*)\))?", re.IGNORECASE)
_BY = re.compile(r"\sby\s+([^\s;()]+)", re.IGNORECASE)
_WITH = re.compile(r"\swith\s+([A-Za-z0-9_-]+)", re.IGNORECASE)
_LITERAL = re.compile(r"\[(?:ipv6:)?([0-9a-f:.]+)\]", re.IGNORECASE)
_HOST = re.compile(r"^[a-z0-9._-]+$", re.IGNORECASE)


def srs_domains(envelope_from: str) -> tuple[str, str] | None:
    """(forwarder domain, original domain) of an SRS0/SRS1 address, else None.

    SRS0=HHH=TT=orig.example=user@forwarder.example and
    SRS1=HHH=first.example==HHH=TT=orig.example=user@forwarder.example.
    """
    address = envelope_from.strip().strip("<>").lower()
    local, at, domain = address.rpartition("@")
    if not at or not domain:
        return None
    if local.startswith(_SRS0):
        parts = local[len(_SRS0):].split("=", 3)
    elif local.startswith(_SRS1):
        _hash, _sep, rest = local[len(_SRS1):].partition("==")
        parts = rest.split("=", 3)
    else:
        return None
    if len(parts) != 4 or not parts[2]:
        return None
    return domain.rstrip("."), parts[2].rstrip(".")


def _client_domain(client_name: str) -> str | None:
    name = client_name.strip().lower().rstrip(".")
    return None if name in _NO_NAME else registered_domain(name)


def _same_operator(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    family = provider_family(a)
    return a == b or (family is not None and family == provider_family(b))


def srs_origin(envelope_from: str, client_name: str) -> str:
    """The original domain of SRS mail from its own forwarder, "" otherwise.

    Anyone can write `SRS0=…@forwarder.example`; only the forwarder's own
    hosts connect with its reverse name, which the sender does not choose.
    """
    found = srs_domains(envelope_from)
    client = _client_domain(client_name)
    if found is None or client is None:
        return ""
    forwarder, origin = found
    origin_rd = registered_domain(origin)
    if registered_domain(forwarder) != client or _same_operator(origin_rd, client):
        return ""
    return origin_rd or origin


def _public(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address that identifies a host elsewhere: not a LAN, loopback or link address
    (a hop from one of those is a submission inside the client's own network)."""
    address = ip_of(text)
    if address is None or is_lan_address(address) or address.is_unspecified:
        return None
    return address


def _names_client(header: str, client_ip: object) -> bool:
    from_part = header.split(" by ", 1)[0]
    return any(ip_of(m.group(1)) == client_ip for m in _LITERAL.finditer(from_part))


def _hop_origin(header: str, client_ip: object, client_rd: str) -> str:
    """The origin a hop written by the client names, or "" if it is not a relay hop."""
    by = _BY.search(header)
    if by is None or registered_domain(by.group(1)) != client_rd:
        return ""  # not written by the connecting client: nothing it says is checked
    with_ = _WITH.search(header)
    protocol = with_.group(1).upper() if with_ else ""
    if protocol.endswith(("SA", "A")) or "HTTP" in protocol:
        return ""  # an authenticated submission (ESMTPSA, ESMTPA, HTTP): not forwarding
    m = _FROM.match(header)
    if m is None:
        return ""
    inside = m.group(2) or ""
    literal = _LITERAL.search(inside) or _LITERAL.search(m.group(1))
    origin_ip = _public(literal.group(1)) if literal else None
    if origin_ip is None or origin_ip == client_ip:
        return ""
    names = [w for w in (inside.split("[", 1)[0].strip(), m.group(1)) if _HOST.match(w)]
    origin_rd = next((rd for w in names if (rd := registered_domain(w))), None)
    if _same_operator(origin_rd, client_rd):
        return ""  # a hop inside one provider (Microsoft 365's internal relays)
    return origin_rd or str(origin_ip)


def received_origin(received: Sequence[str], client_addr: str, client_name: str) -> str:
    """The origin named by the first hop below ours, if the client wrote it; else "".

    `received` is the message's Received headers, topmost first. Ours is the
    first that names the client's address in its from clause (an MTA that
    does not show its own header to the milter has none: the hop below ours
    is then the topmost).
    """
    client_ip = ip_of(client_addr)
    client_rd = _client_domain(client_name)
    if client_ip is None or client_rd is None:
        return ""
    headers = [h[:MAX_RECEIVED_CHARS] for h in received[:MAX_RECEIVED_KEPT]]
    below = 0
    for i, header in enumerate(headers):
        if _names_client(header, client_ip):
            below = i + 1
            break
    if below >= len(headers):
        return ""
    return _hop_origin(headers[below], client_ip, client_rd)


def forwarded_origin(envelope_from: str, received: Sequence[str], client_addr: str,
                     client_name: str) -> str:
    """Where a forwarded message came from (a domain or an address), "" if not forwarded."""
    return (srs_origin(envelope_from, client_name)
            or received_origin(received, client_addr, client_name))


# Asked for every submission the baseline learns from: a customer sends from the same
# few addresses through the same named host all day, and each answer walked the public
# suffix list twice.
@functools.lru_cache(maxsize=4096)
def foreign_envelope(envelope_from: str, client_name: str) -> bool:
    """Whether an envelope domain is another operator's than the client's reverse name:
    what most of a forwarder's mail looks like (the original sender's own address)."""
    client = _client_domain(client_name)
    domain = registered_domain(address_domain(envelope_from)) if "@" in envelope_from else None
    if srs_domains(envelope_from) is not None:
        return bool(srs_origin(envelope_from, client_name))
    return client is not None and domain is not None and not _same_operator(domain, client)
