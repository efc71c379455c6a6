"""libmilter's socket specs (`inet:PORT@HOST`, `inet6:PORT@HOST`, `unix:/path`): parse, probe.

The milter listens on one; `extrusion serve` waits for its child milter on it;
`extrusion.postfixaddr` renders one as Postfix writes it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Literal

MAX_PORT = 65535


@dataclass(frozen=True)
class MilterSocket:
    """A parsed spec: `kind` inet/inet6 with `port` and `host` ("" when the spec names
    none, i.e. libmilter listens on every interface), or unix with `path`."""

    kind: Literal["inet", "inet6", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""


def parse(spec: str) -> MilterSocket:
    """The spec's parts; ValueError, naming the spec, when it is not one libmilter takes."""
    kind, sep, rest = spec.partition(":")
    if kind in ("unix", "local") and sep:
        if not rest:
            raise ValueError(f"milter socket {spec!r}: no path after {kind}:")
        return MilterSocket("unix", path=rest)
    if kind not in ("inet", "inet6") or not sep:
        raise ValueError(f"milter socket {spec!r}: expected inet:PORT@HOST or unix:/path")
    port, _, host = rest.partition("@")
    if not port.isdigit() or not 0 < int(port) <= MAX_PORT:
        raise ValueError(f"milter socket {spec!r}: bad port {port!r} (1-{MAX_PORT})")
    # libmilter takes a bracketed address literal too: inet:8890@[127.0.0.1].
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return MilterSocket("inet6" if kind == "inet6" else "inet", host=host, port=int(port))


def address(spec: str) -> tuple[int, Any]:
    """The spec as (socket family, address); a missing host means loopback."""
    parsed = parse(spec)
    if parsed.kind == "unix":
        return socket.AF_UNIX, parsed.path
    if parsed.kind == "inet6":
        return socket.AF_INET6, (parsed.host or "::1", parsed.port)
    return socket.AF_INET, (parsed.host or "127.0.0.1", parsed.port)


def accepts(spec: str) -> bool:
    """Whether something accepts connections on `spec` now."""
    family, where = address(spec)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.connect(where)
    except OSError:
        return False
    return True
