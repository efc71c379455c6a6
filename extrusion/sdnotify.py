"""systemd readiness (`Type=notify`): one datagram to $NOTIFY_SOCKET, no dependency.

The socket path may be abstract (leading "@", which becomes a NUL byte).
Without NOTIFY_SOCKET, as when run by hand or in tests, this does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("extrusion.policyd")


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send e.g. "READY=1" or "STOPPING=1"; True if a notification socket took it."""
    path = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify %s to %r failed: %s", state, path, exc)
        return False
    return True
