"""Shared helpers of the policy daemon tests (no tests here): configs, requests, engines.

Every test runs the real engine on a SQLite store in its own temp dir (or on
the run's PostgreSQL database where that matters).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from extrusion.config import Config

from . import helpers

ALICE = "alice@customer.example"

# What a daemon under test differs in from helpers.config(): debug logs, quick
# flushes and retries, listeners on free loopback ports, no milter.
DAEMON: dict[str, Any] = {
    "general": {"log_level": "debug"},
    "store": {"refresh_seconds": 0.5},
    "policyd": {"listen": "tcp:0:interface=127.0.0.1", "hold_queued_mail": False,
                "flush_seconds": 0.2, "engine_retry_seconds": 0.5},
    "api": {"listen": "tcp:0:interface=127.0.0.1"},
    "milter": {"enabled": False},
}


def make_config(tmp: Path, store_url: str | None = None, **sections: dict[str, Any]) -> Config:
    """A daemon's config: store and spool under `tmp`, listeners on free loopback ports."""
    return helpers.config(tmp, store_url, hostname="mta1.test", path=tmp / "extrusion.toml",
                          **helpers.merge(DAEMON, sections))


def request(state: str = "RCPT", **attrs: Any) -> bytes:
    """One policy request as Postfix would send it."""
    fields: dict[str, Any] = {
        "request": "smtpd_access_policy",
        "protocol_state": state,
        "protocol_name": "ESMTP",
        "helo_name": "pc17.customer.example",
        "queue_id": "",
        "sender": ALICE,
        "recipient": "bob@remote.example" if state == "RCPT" else "",
        "recipient_count": 0,
        "client_address": "192.0.2.17",
        "client_name": "unknown",
        "instance": "1b2c.6571b0a3.9c1f2.0",
        "sasl_method": "plain",
        "sasl_username": ALICE,
        "size": 0,
    }
    fields.update(attrs)
    return "".join(f"{k}={v}\n" for k, v in fields.items()).encode() + b"\n"


def reply(action: str) -> bytes:
    return f"action={action}\n\n".encode()


def read_replies(sock: socket.socket, n: int, timeout: float = 10.0) -> list[bytes]:
    """Read `n` complete replies from a blocking socket."""
    sock.settimeout(timeout)
    buf = b""
    while buf.count(b"\n\n") < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return [part + b"\n\n" for part in buf.split(b"\n\n")[:-1]]


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while chunk := sock.recv(65536):
        buf += chunk
    return buf
