"""Sender keys in one place: what traffic is keyed by, and what an operator may name.

A key is `sasl:USER`, `ip:ADDRESS` or `customer:NAME` (README, "Operating it").
Addresses are canonical text (IPv6 lowercase and compressed, an IPv4-mapped
IPv6 address folded to IPv4), so one client always has one key whether it
came from the milter, the policy protocol, the log feed, replay, the CLI,
the API or the config. SASL user names are kept as the MTA gives them.

Operator input that is no key is refused here with `SenderKeyError`, whose
`status` is a sysexits code: EX_USAGE for malformed text, EX_DATAERR for a
well-formed key that traffic can never produce (see `SenderMap.operator_key`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from extrusion.exits import EX_USAGE
from extrusion.netaddr import IPAddress, ip_of

SASL = "sasl:"
IP = "ip:"
CUSTOMER = "customer:"
PREFIXES = (SASL, IP, CUSTOMER)
FORMS = "sasl:USER, ip:ADDRESS or customer:NAME"

# sysexits(3): the operator commands' exit statuses for refused keys.
# EX_USAGE: malformed (unknown prefix, empty, not an address, a range); EX_DATAERR:
# well-formed, but traffic never has this key.

_IPV6_TAG = "ipv6:"  # Sendmail/Postfix address-literal tag, as in [IPv6:2001:db8::1]


class SenderKeyError(ValueError):
    """Operator input that names no sender; the message is one line for a terminal."""

    def __init__(self, message: str, status: int = EX_USAGE) -> None:
        super().__init__(message)
        self.status = status


def parse_address(addr: str) -> IPAddress | None:
    """An address in an MTA's notation (`[192.0.2.1]`, `IPv6:2001:db8::1`), or None."""
    a = addr.strip().strip("[]")
    if a[:5].lower() == _IPV6_TAG:
        a = a[5:]
    return ip_of(a)


def normal_address(addr: str) -> str:
    """Canonical text of a client address; text that is no IPv6 address is kept as is.

    For the per-connection hot path: an IPv4 address the parser accepts (four
    decimal octets, no leading zeros) is already canonical, and parsing would
    cost more than the rest of the milter's connect callback.
    """
    if ":" not in addr:
        return addr
    ip = ip_of(addr)
    return addr if ip is None else str(ip)


def client_key(client_addr: str, sasl_user: str = "") -> str:
    """The key of a client that no [[customers]] entry claims."""
    if sasl_user:
        return f"{SASL}{sasl_user}"
    ip = parse_address(client_addr)
    # Traffic is keyed whatever the MTA says ("unknown" included): never refused.
    return f"{IP}{ip if ip is not None else client_addr.strip()}"


def address_of(key: str) -> IPAddress | None:
    """The client address an `ip:` key names, else None."""
    return parse_address(key[len(IP):]) if key.startswith(IP) else None


def operator_key(text: str) -> str:
    """An operator's sender key in canonical form; SenderKeyError (EX_USAGE) if malformed.

    `ip:2001:DB8::0001` becomes `ip:2001:db8::1`, `ip:::ffff:192.0.2.5`
    becomes `ip:192.0.2.5`; the prefix may be written in any case. Whether
    a customer exists is the config's business (`SenderMap.operator_key`).
    """
    stripped = text.strip()
    prefix, sep, rest = stripped.partition(":")
    prefix = f"{prefix.lower()}{sep}"
    if prefix not in PREFIXES:
        raise SenderKeyError(f"{text!r} is not a sender key ({FORMS})")
    if not rest.strip() or rest != rest.strip():
        raise SenderKeyError(f"{text!r} names nobody: nothing after {prefix!r}")
    if not rest.isprintable():
        raise SenderKeyError(f"{text!r} has control characters")
    if prefix != IP:
        return f"{prefix}{rest}"
    ip = parse_address(rest)
    if ip is not None:
        return f"{IP}{ip}"
    if "/" in rest:
        try:
            net = ipaddress.ip_network(rest.strip("[]"), strict=False)
        except ValueError:
            pass
        else:
            raise SenderKeyError(
                f"{text!r} is a range, and a sender key names one address; for a range "
                f'add an [[overrides]] entry to the config (match = "{net}")'
            )
    raise SenderKeyError(f"{text!r} is not an IP address (ip:ADDRESS, e.g. ip:192.0.2.7)")


def override_problem(match: str, customers: Collection[str]) -> str | None:
    """Why a config [[overrides]] `match` can never match traffic, or None if it can.

    A match is a sender key, an address or CIDR (bare or after `ip:`), or a
    glob such as `sasl:*@example.com`.
    """
    m = match.strip()
    if not m:
        return "empty"
    if any(ch in m for ch in "*?["):
        return None  # a pattern: fnmatch accepts anything
    prefixed = m.partition(":")[0].lower() + ":" in PREFIXES
    if not prefixed or (m[:len(IP)].lower() == IP and "/" in m):
        # A CIDR (or one address): any sender last seen inside it.
        try:
            ipaddress.ip_network(m[len(IP):] if prefixed else m, strict=False)
        except ValueError:
            return f"{match!r} is not a sender key ({FORMS}), a CIDR or a pattern"
        return None
    try:
        key = operator_key(m)
    except SenderKeyError as exc:
        return str(exc)
    if key.startswith(CUSTOMER) and key[len(CUSTOMER):] not in customers:
        return f"{key!r} is no customer in [[customers]]"
    return None
