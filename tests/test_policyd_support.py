"""Shared helpers of the policy daemon tests (no tests here): configs, requests, engines.

Every test runs the real engine on a SQLite store in its own temp dir (or on
the run's PostgreSQL database where that matters).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from extrusion import config as configmod
from extrusion.config import Config

ALICE = "alice@customer.example"


def make_config(tmp: Path, store_url: str | None = None, **sections: dict[str, Any]) -> Config:
    """A config for tests: store and spool under `tmp`, listeners on free loopback ports."""
    data: dict[str, Any] = {
        "general": {"hostname": "mta1.test", "log_level": "debug"},
        "store": {
            "url": store_url or f"sqlite:///{tmp / 'extrusion.db'}",
            "spool_dir": str(tmp / "spool"),
            "refresh_seconds": 0.5,
        },
        "policyd": {"listen": "tcp:0:interface=127.0.0.1", "hold_queued_mail": False,
                    "flush_seconds": 0.2, "engine_retry_seconds": 0.5},
        "api": {"listen": "tcp:0:interface=127.0.0.1"},
        "milter": {"enabled": False},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    path = tmp / "extrusion.toml"
    return configmod.from_dict(data, path)


def toml_text(data: dict[str, Any]) -> str:
    """A minimal TOML writer for the generated config files (tables of scalars and lists)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    for name, section in data.items():
        if isinstance(section, list):  # arrays of tables
            for item in section:
                lines.append(f"[[{name}]]")
                lines.extend(f"{k} = {value(v)}" for k, v in item.items())
        else:
            table(name, section)
    return "\n".join(lines) + "\n"


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
