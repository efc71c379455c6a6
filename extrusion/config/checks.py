"""Value checks a field names in its metadata (`checked("endpoint")`): endpoint syntax,
milter and syslog sockets, CIDR networks, store URLs, time zones."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from extrusion import postfixaddr

_TWISTED_SERVER_PREFIXES = ("tcp:", "tcp6:", "unix:", "ssl:", "systemd:")
_UDP_RE = re.compile(r"^udp:(\d{1,5})(:interface=[^:]+)?$")


# Endpoint strings separate fields with ':'; a '\:' is a colon inside a field (IPv6).
_ENDPOINT_SPLIT = re.compile(r"(?<!\\):")


def check_endpoint(value: str) -> str | None:
    """A Twisted server endpoint string (`tcp:10040:interface=127.0.0.1`, `unix:/path`)."""
    if not value.startswith(_TWISTED_SERVER_PREFIXES):
        return "not a Twisted endpoint string (expected tcp:PORT:interface=ADDR or unix:/path)"
    if value.startswith(("tcp:", "tcp6:", "ssl:")):
        port = value.split(":")[1]
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            return f"bad port {port!r} in endpoint"
    if value.startswith("unix:") and len(value) <= len("unix:"):
        return "unix endpoint without a path"
    # Twisted keeps the last of a repeated option, and a check reading the first would
    # pass `interface=127.0.0.1:interface=0.0.0.0`, which listens on every address.
    seen: set[str] = set()
    for part in _ENDPOINT_SPLIT.split(value)[1:]:
        name, eq, option = part.partition("=")
        if not eq:
            continue  # a positional field (the port, a path)
        if name in seen:
            return f"option {name!r} given twice in endpoint"
        seen.add(name)
        if (name == "interface" and value.startswith(("tcp:", "tcp6:", "ssl:"))
                and (problem := _interface_problem(option.replace("\\:", ":")))):
            return problem
    return None


def _interface_problem(interface: str) -> str | None:
    """Twisted binds `interface=` as given: a name (eth0, a host name) fails only when the
    daemon starts, with a traceback; refuse it here with the reason."""
    try:
        ipaddress.ip_address(interface)
    except ValueError:
        return (f"interface {interface!r} is not an IP address (name the address to listen "
                f"on, e.g. interface=127.0.0.1)")
    return None


def check_milter_socket(value: str) -> str | None:
    """libmilter's socket form: `inet:PORT@HOST`, `inet6:PORT@HOST` or `unix:/path`, one
    Postfix can be pointed at (`extrusion.postfixaddr`, which parses with `sockspec`)."""
    try:
        listener = postfixaddr.milter_listener(value)
    except ValueError as exc:
        return f"not a milter socket ({str(exc).removeprefix(f'milter socket {value!r}: ')})"
    if listener.kind == "unix" and not listener.path.startswith("/"):
        return "not a milter socket (a unix socket needs an absolute path)"
    return None


def check_syslog_endpoint(value: str) -> str | None:
    """`udp:PORT[:interface=ADDR]` or `unix:/path` (a datagram socket)."""
    if m := _UDP_RE.fullmatch(value):
        if int(m.group(1)) > 65535:
            return f"bad port {m.group(1)!r} in endpoint"
        return _interface_problem(m.group(2).removeprefix(":interface=")) if m.group(2) else None
    if re.fullmatch(r"unix:/.+", value):
        return None
    return "not a syslog endpoint (expected udp:PORT:interface=ADDR or unix:/path)"


def check_networks(value: tuple[str, ...]) -> str | None:
    for net in value:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            return f"{net!r} is not an IP network"
    return None


def check_store_url(value: str) -> str | None:
    if value == "":
        return None  # the default place (see `place_store`)
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
        return "store url must start with sqlite:// or postgresql+psycopg://"
    return None


def check_timezone(value: str) -> str | None:
    """An IANA zone name such as `Europe/Oslo`, or "" for the machine's local time."""
    if not value:
        return None
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r}"
    return None


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "timezone": check_timezone,
    "endpoint": check_endpoint,
    "milter_socket": check_milter_socket,
    "syslog_endpoint": check_syslog_endpoint,
    "networks": check_networks,
    "store_url": check_store_url,
}




def checked(name: str) -> dict[str, str]:
    """Field metadata naming the check `build` runs on the field's value."""
    return {"check": name}
