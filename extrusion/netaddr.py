"""IP addresses and networks as extrusion reads them: one place for parsing text that may
be no address at all (Postfix says "unknown"), for CIDR lists from the config, and for
"is this address in one of these networks" across IPv4 and IPv6."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> IPAddress | None:
    """The address in plain text, as written; None if it is none."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def ip_of(text: str) -> IPAddress | None:
    """The address in plain text, IPv4-mapped IPv6 folded to IPv4; None if it is none."""
    ip = parse_ip(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR texts as networks, host bits allowed (`192.0.2.7/24`); ValueError if one is
    no network (the config has checked its own lists at start-up)."""
    return tuple(ipaddress.ip_network(t.strip(), strict=False) for t in texts)


def within(ip: IPAddress, nets: Iterable[IPNetwork]) -> bool:
    """Whether `ip` lies in one of `nets` (an address never lies in the other family's)."""
    return any(ip.version == n.version and ip in n for n in nets)


def is_loopback(text: str) -> bool:
    """Whether `text` is a loopback address (127.0.0.0/8, ::1); False for no address."""
    ip = parse_ip(text)
    return ip is not None and ip.is_loopback
