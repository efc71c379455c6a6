"""`check-config`: can the daemons listen where the config says? Tried by binding.

The syntax of every listen address is checked when the config is loaded; what only
the machine can answer — is the port free, is the address one of this host's — is
answered here by binding a socket exactly as the daemon would (SO_REUSEADDR on TCP, as
Twisted and libmilter set it) and closing it at once. Unix sockets are left alone:
the daemons replace a stale one, and a live one is no bind to try.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass

from extrusion import sockspec
from extrusion.config import Config


@dataclass(frozen=True)
class Probe:
    """One listener to try: the config key, its value, and the socket to bind."""

    key: str
    value: str
    kind: int  # SOCK_STREAM or SOCK_DGRAM
    host: str
    port: int


def probes(cfg: Config) -> list[Probe]:
    """Every enabled TCP/UDP listener of the config (port 0 and unix sockets skipped)."""
    found: list[Probe] = []
    if cfg.policyd.enabled:
        found += _endpoint("policyd.listen", cfg.policyd.listen)
    if cfg.api.enabled:
        found += _endpoint("api.listen", cfg.api.listen)
    if cfg.maillog.source == "syslog":
        found += _endpoint("maillog.syslog_listen", cfg.maillog.syslog_listen)
    if cfg.milter.enabled:
        parsed = sockspec.parse(cfg.milter.socket)
        if parsed.kind != "unix":
            host = parsed.host or ("::" if parsed.kind == "inet6" else "0.0.0.0")
            found.append(Probe("milter.socket", cfg.milter.socket, socket.SOCK_STREAM,
                               host, parsed.port))
    return [p for p in found if p.port]


def _endpoint(key: str, value: str) -> list[Probe]:
    """A Twisted (tcp:, tcp6:) or syslog (udp:) endpoint string, already validated."""
    kind_name, _, rest = value.partition(":")
    if kind_name not in ("tcp", "tcp6", "udp"):
        return []  # unix:, ssl: certificates, systemd: sockets handed over: nothing to bind
    fields = [f.replace("\\:", ":") for f in _split(rest)]
    options = dict(f.partition("=")[::2] for f in fields[1:] if "=" in f)
    host = options.get("interface") or ("::" if kind_name == "tcp6" else "0.0.0.0")
    kind = socket.SOCK_DGRAM if kind_name == "udp" else socket.SOCK_STREAM
    return [Probe(key, value, kind, host, int(fields[0]))]


def _split(text: str) -> list[str]:
    """Endpoint fields: ':' separates, '\\:' is a colon inside a field (IPv6)."""
    out, field, escaped = [], "", False
    for ch in text:
        if escaped:
            field, escaped = field + "\\" + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            out.append(field)
            field = ""
        else:
            field += ch
    out.append(field)
    return out


def problem(probe: Probe) -> str | None:
    """Why the daemon could not bind `probe`, in one line; None when it could."""
    family = socket.AF_INET6 if ipaddress.ip_address(probe.host).version == 6 else socket.AF_INET
    try:
        with socket.socket(family, probe.kind) as sock:
            if probe.kind == socket.SOCK_STREAM:  # as Twisted and libmilter; not for UDP
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((probe.host, probe.port))
    except OSError as exc:
        where = f"{probe.key} = {probe.value!r}"
        if exc.errno == errno.EADDRINUSE:
            return (f"{where}: port {probe.port} on {probe.host} is taken by another program "
                    f"(a running extrusion holds it too: stop it first to check this)")
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{where}: {probe.host} is not an address of this machine"
        if exc.errno == errno.EACCES:
            return f"{where}: port {probe.port} needs root (ports below 1024)"
        return f"{where}: cannot listen: {exc.strerror or exc}"
    return None


def problems(cfg: Config) -> list[str]:
    """One line per listener the daemons could not open now."""
    return [line for p in probes(cfg) if (line := problem(p)) is not None]
