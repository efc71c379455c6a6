"""Who a sender is (keys, customers) and which config override applies to it.

Sender keys: `sasl:USER` when the client authenticated, else `ip:ADDR`
(canonical text from `extrusion.keys`); config `[[customers]]` map
SASL patterns and IP ranges to `customer:NAME`.
Config `[[overrides]]` match a key exactly, a CIDR (against the client
address the sender was last seen with) or a glob such as `sasl:*@example.com`;
the first match in file order wins.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from extrusion.config import Customer, Override
from extrusion.exits import EX_DATAERR
from extrusion.keys import (
    CUSTOMER,
    IP,
    SASL,
    SenderKeyError,
    address_of,
    client_key,
    operator_key,
    parse_address,
)
from extrusion.netaddr import IPNetwork, networks

DEFAULT_CLASS = "default"
_CACHE = 65536  # distinct clients remembered by the key lookups


class SenderMap:
    """Maps a client to its sender key and a key to its limits class."""

    def __init__(self, customers: tuple[Customer, ...]) -> None:
        self._sasl = [
            (re.compile(fnmatch.translate(p.lower())), c) for c in customers for p in c.sasl
        ]
        nets = [(net, c) for c in customers for net in networks(c.networks)]
        # Most specific range first, so a customer's /28 inside the ISP's /16 wins.
        self._nets = sorted(nets, key=lambda nc: -nc[0].prefixlen)
        self._classes = {f"{CUSTOMER}{c.name}": c.limits for c in customers}
        self._cached = lru_cache(maxsize=_CACHE)(self._key)

    def _key(self, client_addr: str, sasl_user: str = "") -> str:
        if sasl_user:
            user = sasl_user.lower()
            for pattern, customer in self._sasl:
                if pattern.match(user):
                    return f"{CUSTOMER}{customer.name}"
        # Parsing the address is the dearer half of a new client's key: only when
        # some customer is known by its addresses.
        ip = parse_address(client_addr) if self._nets else None
        if ip is not None:
            for net, customer in self._nets:
                if ip.version == net.version and ip in net:
                    return f"{CUSTOMER}{customer.name}"
        return client_key(client_addr, sasl_user)

    def key(self, client_addr: str, sasl_user: str = "") -> str:
        return self._cached(client_addr, sasl_user)

    def operator_key(self, text: str) -> str:
        """The canonical key an operator means, refused if traffic can never have it.

        Raises SenderKeyError: EX_USAGE for malformed text, EX_DATAERR for a
        customer the config does not define, or an address or SASL user that
        a [[customers]] entry claims (its traffic is keyed `customer:NAME`).
        """
        key = operator_key(text)
        if key.startswith(CUSTOMER):
            if key not in self._classes:
                names = ", ".join(sorted(self._classes)) or "none defined"
                raise SenderKeyError(
                    f"{key!r} is no customer in the config's [[customers]] ({names})",
                    EX_DATAERR)
            return key
        owner = (self.key(key[len(IP):]) if key.startswith(IP)
                 else self.key("", key[len(SASL):]))
        if owner.startswith(CUSTOMER):
            raise SenderKeyError(
                f"{key!r} belongs to {owner} in the config's [[customers]], so its mail "
                f"is counted as {owner}; act on that, or add an [[overrides]] entry",
                EX_DATAERR)
        return key

    def limits_class(self, key: str) -> str:
        return self._classes.get(key, DEFAULT_CLASS)


@dataclass(frozen=True, slots=True)
class _Rule:
    override: Override
    exact: str | None = None
    network: IPNetwork | None = None
    glob: re.Pattern[str] | None = None


class OverrideSet:
    """The config's [[overrides]], compiled for matching."""

    def __init__(self, overrides: tuple[Override, ...]) -> None:
        self._rules = [_compile(o) for o in overrides]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def match(self, key: str, client_addr: str = "") -> Override | None:
        ip = address_of(key) or (parse_address(client_addr) if client_addr else None)
        lowered = key.lower()
        for r in self._rules:
            if r.exact is not None and r.exact == lowered:
                return r.override
            if (r.network is not None and ip is not None
                    and ip.version == r.network.version and ip in r.network):
                return r.override
            if r.glob is not None and r.glob.match(lowered):
                return r.override
        return None


def _compile(o: Override) -> _Rule:
    m = o.match.strip()
    if any(ch in m for ch in "*?["):
        return _Rule(o, glob=re.compile(fnmatch.translate(m.lower())))
    prefixed = m.lower().startswith(IP)
    text = m[len(IP):] if prefixed else m
    if prefixed and "/" not in text and (ip := parse_address(text)) is not None:
        return _Rule(o, exact=f"{IP}{ip}")  # that IP sender only
    if prefixed or ":" not in m or "/" in m:
        # A CIDR or a bare address: matches any sender last seen from inside it.
        try:
            return _Rule(o, network=ipaddress.ip_network(text, strict=False))
        except ValueError:
            pass
    return _Rule(o, exact=m.lower())
