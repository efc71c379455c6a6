"""extrusion's listen addresses as Postfix writes them, and whether Postfix reaches them.

extrusion listens where its config says, in two forms: a Twisted endpoint
string for the policy service (`tcp:10040:interface=127.0.0.1`,
`tcp6:10040:interface=\\:\\:1`, `unix:/path:mode=660`) and libmilter's socket
spec for the milter (`inet:8890@127.0.0.1`, `inet6:8890@::1`, `unix:/path`).
Postfix connects to `inet:HOST:PORT`, `inet:[IPV6]:PORT` or `unix:/path`.
`extrusion serve` prints the rendered addresses (`policyd.postfixconf`) and
`extrusion check-config --mta postfix` compares Postfix's own with them
(`mtacheck`); both go through this module.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Literal

from extrusion import sockspec
from extrusion.netaddr import is_loopback

MAX_PORT = 65535
# A listener on every interface is reached, from the same host, on loopback.
LOOPBACK_V4 = "127.0.0.1"
LOOPBACK_V6 = "::1"
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_LOCALHOST = "localhost"


@dataclass(frozen=True)
class PostfixAddress:
    """A Postfix client address: `inet` with host (no brackets) and port, or `unix` path."""

    kind: Literal["inet", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"


@dataclass(frozen=True)
class Listener:
    """Where extrusion listens. `wildcard`: on every interface of `family`, so `host` is
    the loopback address Postfix on the same host should use."""

    kind: Literal["inet", "unix"]
    family: Literal["ipv4", "ipv6", ""] = ""
    host: str = ""
    port: int = 0
    path: str = ""
    wildcard: bool = False

    @property
    def postfix(self) -> PostfixAddress:
        """The address Postfix's main.cf gives for this listener."""
        return PostfixAddress(self.kind, self.host, self.port, self.path)

    def __str__(self) -> str:
        return str(self.postfix)

    def reached_by(self, address: str, queue_directory: str = "") -> bool:
        """Whether Postfix, connecting to `address` (its main.cf spelling), reaches us.

        Loopback spellings count as one where the listener accepts them all; a unix
        path may be given as a chrooted smtpd sees it, relative to the queue directory.
        """
        try:
            theirs = parse(address)
        except ValueError:
            return False
        if self.kind == "unix" or theirs.kind == "unix":
            return theirs.kind == self.kind and _same_path(theirs.path, self.path,
                                                           queue_directory)
        if theirs.port != self.port:
            return False
        host = _normal_host(theirs.host)
        if host == _normal_host(self.host):
            return True
        if host == _LOCALHOST:  # resolves to 127.0.0.1 and, on most hosts, ::1 too
            return self.wildcard or _is_loopback(self.host)
        if self.wildcard and _is_loopback(host):
            # tcp6 and inet6 without a host bind `::`, which takes IPv4 too (dual stack).
            return self.family == "ipv6" or ":" not in host
        return False


# --- extrusion's forms -> Listener -----------------------------------------------------


def milter_listener(spec: str) -> Listener:
    """libmilter's `inet:PORT@HOST`, `inet6:PORT@HOST`, `unix:/path`, `local:/path`."""
    sock = sockspec.parse(spec)
    if sock.kind == "unix":
        return Listener("unix", path=sock.path)
    family: Literal["ipv4", "ipv6"] = "ipv6" if sock.kind == "inet6" else "ipv4"
    return _inet(f"milter socket {spec!r}", family, sock.host, sock.port)


def policy_listener(endpoint: str) -> Listener:
    """A Twisted server endpoint string: `tcp:`, `tcp6:` or `unix:`, options allowed."""
    where = f"policy endpoint {endpoint!r}"
    args, kwargs = _endpoint_parts(endpoint)
    kind = args.pop(0) if args else ""
    if kind == "unix":
        path = kwargs.get("address") or (args.pop(0) if args else "")
        if not path:
            raise ValueError(f"{where}: no path after unix:")
        if args:
            raise ValueError(f"{where}: unexpected {':'.join(args)!r} (options take name=value)")
        return Listener("unix", path=path)
    if kind not in ("tcp", "tcp6"):
        why = {"ssl": "Postfix's policy client speaks plain TCP, not TLS",
               "systemd": "the address of a socket passed by systemd is not in the string"
               }.get(kind, "expected tcp:PORT:interface=ADDR, tcp6:PORT:interface=ADDR "
                           "or unix:/path")
        raise ValueError(f"{where}: {why}")
    port = kwargs.get("port") or (args.pop(0) if args else "")
    if args:
        raise ValueError(f"{where}: unexpected {':'.join(args)!r} "
                         f"(give the address as interface=ADDR)")
    if not port.isdigit() or not 0 < int(port) <= MAX_PORT:
        raise ValueError(f"{where}: bad port {port!r} (1-{MAX_PORT})")
    family: Literal["ipv4", "ipv6"] = "ipv6" if kind == "tcp6" else "ipv4"
    return _inet(where, family, kwargs.get("interface", ""), int(port))


def milter_address(spec: str, queue_directory: str = "") -> str:
    """libmilter's socket spec as Postfix writes it: `inet:8890@::1` -> `inet:[::1]:8890`.

    A unix socket inside `queue_directory` is given relative to it
    (`unix:extrusion/milter.sock`): Postfix's daemons run there, chrooted or not, so
    the one spelling reaches the socket either way.
    """
    listener = milter_listener(spec)
    if listener.kind == "unix" and queue_directory:
        inside = os.path.relpath(os.path.normpath(listener.path),
                                 os.path.normpath(queue_directory))
        if not inside.startswith(os.pardir):
            return f"unix:{inside}"
    return str(listener)


def policy_address(endpoint: str) -> str:
    """A Twisted endpoint as Postfix writes it: `tcp:10040` -> `inet:127.0.0.1:10040`."""
    return str(policy_listener(endpoint))


# --- Postfix's form ----------------------------------------------------------------------


def parse(address: str) -> PostfixAddress:
    """`inet:HOST:PORT`, `inet:[IPV6]:PORT` or `unix:PATH` (`local:` too), as in main.cf."""
    kind, sep, rest = address.partition(":")
    if kind in ("unix", "local") and sep and rest:
        return PostfixAddress("unix", path=rest)
    if kind != "inet" or not sep:
        raise ValueError(f"Postfix address {address!r}: expected inet:HOST:PORT, "
                         f"inet:[IPV6]:PORT or unix:/path")
    host, _, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"Postfix address {address!r}: an IPv6 host goes in brackets, "
                         f"inet:[{host}]:{port}")
    if not host or not port.isdigit() or not 0 < int(port) <= MAX_PORT:
        raise ValueError(f"Postfix address {address!r}: expected inet:HOST:PORT")
    return PostfixAddress("inet", host=host, port=int(port))


# --- helpers -----------------------------------------------------------------------------


def _inet(where: str, family: Literal["ipv4", "ipv6"], host: str, port: int) -> Listener:
    """An inet listener; an IP literal must be of the listener's family."""
    if host in _WILDCARDS:
        if host and (":" in host) != (family == "ipv6"):
            raise ValueError(f"{where}: {host} is not an {_FAMILY_NAME[family]} address")
        loopback = LOOPBACK_V6 if family == "ipv6" else LOOPBACK_V4
        return Listener("inet", family, loopback, port, wildcard=True)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if ":" in host or not host.replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"{where}: {host!r} is neither an address nor a host name") \
                from None
        return Listener("inet", family, host.lower(), port)
    if (ip.version == 6) != (family == "ipv6"):
        raise ValueError(f"{where}: {host} is not an {_FAMILY_NAME[family]} address")
    return Listener("inet", family, str(ip), port)


_FAMILY_NAME = {"ipv4": "IPv4", "ipv6": "IPv6"}


def _endpoint_parts(endpoint: str) -> tuple[list[str], dict[str, str]]:
    """Split a Twisted endpoint string as Twisted does: `:` between parts, `=` between a
    keyword and its value, `\\` escaping the next character (`interface=\\:\\:1`)."""
    args: list[str] = []
    kwargs: dict[str, str] = {}
    fields: list[str] = [""]
    escaped = False
    for c in endpoint + ":":
        if escaped:
            fields[-1] += c
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "=" and len(fields) == 1:
            fields.append("")
        elif c == ":":
            if len(fields) == 1:
                args.append(fields[0])
            else:
                kwargs[fields[0]] = fields[1]
            fields = [""]
        else:
            fields[-1] += c
    if "interface" in kwargs and kwargs["interface"] == "" and len(args) > 2:
        # `interface=::1` unescaped: Twisted reads interface="" and two stray parts.
        raise ValueError(f"policy endpoint {endpoint!r}: escape the colons of an IPv6 "
                         f"interface, interface=\\:\\:1")
    return args, kwargs


def _normal_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def _is_loopback(host: str) -> bool:
    return is_loopback(host) or host.lower() == _LOCALHOST


def _same_path(theirs: str, ours: str, queue_directory: str) -> bool:
    """Postfix's unix path is ours as is, or as smtpd sees it from the queue directory
    (chrooted there: `/extrusion/milter.sock`; or relative to it: `private/policy`)."""
    if os.path.normpath(theirs) == os.path.normpath(ours):
        return True
    if not queue_directory:
        return False
    inside = os.path.join(queue_directory, theirs.lstrip("/"))
    return os.path.normpath(inside) == os.path.normpath(ours)
