"""Host names, registered domains and address literals, as a HELO or an envelope gives them.

The public suffix list decides what a registered domain is ("usa.net" for
"lrhnow.usa.net", none for "co.uk"); everything here takes untrusted text,
never raises on it, and answers None or "" for what cannot be a name.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import threading

from publicsuffixlist import PublicSuffixList

from extrusion.netaddr import ip_of
from extrusion.scoring.providers import provider_family

MAX_HOSTNAME_LENGTH = 253  # longest name the DNS can hold, in text form

# Address literals that say "my LAN address": a client behind NAT (home
# router, CGNAT) legitimately announces one of these, and they identify nobody.
_NAT_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_psl: PublicSuffixList | None = None
_psl_lock = threading.Lock()


def _suffix_list() -> PublicSuffixList:
    """The public suffix list, parsed once on first use (building it is slow)."""
    global _psl
    if _psl is None:
        with _psl_lock:
            if _psl is None:
                _psl = PublicSuffixList()
    return _psl


def parse_literal(text: str) -> IPAddress | None:
    """An address from "192.0.2.1", "[192.0.2.1]" or "[IPv6:2001:db8::1]"; IPv4-mapped unmapped."""
    text = text.strip()
    # Cheap refusals first: most HELOs are names, and a failed parse raises.
    if not text or len(text) > 64 or not (text[0] in "[:" or text[0].isdigit() or ":" in text):
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    return ip_of(text)


def is_lan_address(address: IPAddress) -> bool:
    """A LAN, CGNAT, loopback or link-local address: one that identifies nobody."""
    return any(address in network for network in _NAT_NETWORKS)


def normalise_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


def host_name(name: str) -> str | None:
    """`name` as a lower-case ASCII host name, or None if it cannot be one."""
    name = normalise_name(name)
    if not name or len(name) > MAX_HOSTNAME_LENGTH:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    # A top-level label is never numeric, so a name ending in a digit is an
    # address (or nothing) and ":" only occurs in IPv6 addresses.
    if name[-1].isdigit() or not _HOSTNAME.fullmatch(name):
        return None
    return name


@functools.lru_cache(maxsize=8192)
def _registered(hostname: str) -> str | None:
    try:
        result = _suffix_list().privatesuffix(hostname)
    except Exception:  # a third-party parser on hostile input must not take the session down
        return None
    return result if isinstance(result, str) else None


def registered_domain(name: str) -> str | None:
    """The registrable domain of a host name ("lrhnow.usa.net" -> "usa.net"), else None.

    None for address literals, public suffixes themselves ("co.uk"), bare
    words and anything that cannot be a host name.
    """
    hostname = host_name(name)
    return _registered(hostname) if hostname is not None else None


def address_domain(address: str) -> str:
    """The domain of an envelope address ("<Jo@Example.COM>" -> "example.com"), "" if none."""
    address = address.strip().strip("<>").strip()
    if "@" not in address:
        return ""
    return normalise_name(address.rsplit("@", 1)[1])


def same_operator(a: str | None, b: str | None) -> bool:
    """Whether two registered domains belong to one operator (hotmail.com ~ outlook.com)."""
    if a is None or b is None:
        return False
    if a == b:
        return True
    family = provider_family(a)
    return family is not None and family == provider_family(b)
