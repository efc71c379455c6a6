"""libmilter's socket specs (`inet:PORT@HOST`, `inet6:PORT@HOST`, `unix:/path`): parse, probe.

The milter listens on one; `extrusion serve` waits for its child milter on it.
"""

from __future__ import annotations

import socket
from typing import Any


def address(spec: str) -> tuple[int, Any]:
    """The spec as (socket family, address); a missing host means loopback."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return socket.AF_UNIX, rest
    port, _, host = rest.partition("@")
    if kind == "inet6":
        return socket.AF_INET6, (host or "::1", int(port))
    return socket.AF_INET, (host or "127.0.0.1", int(port))


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
