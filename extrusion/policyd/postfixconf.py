"""The main.cf lines that wire Postfix to this configuration (printed by `extrusion serve`).

Addresses are translated from extrusion's forms (Twisted endpoint strings,
libmilter sockets) into Postfix's (`inet:HOST:PORT`, `unix:/path`). Every
line fails open: with extrusion down, mail flows unjudged.
"""

from __future__ import annotations

import re

from extrusion.config import Config

# Postfix waits this long for a policy answer before using default_action.
POLICY_TIMEOUT = "10s"


def policy_address(endpoint: str) -> str:
    """`tcp:10040:interface=127.0.0.1` -> `inet:127.0.0.1:10040`; `unix:/p` -> `unix:/p`."""
    if endpoint.startswith("unix:"):
        path = endpoint[len("unix:"):].split(":", 1)[0]
        return f"unix:{path}"
    parts = endpoint.split(":")
    port = parts[1] if len(parts) > 1 else "10040"
    host = "127.0.0.1"
    if m := re.search(r"interface=((?:\\:|[^:])+)", endpoint):
        host = m.group(1).replace("\\", "")
        if ":" in host:
            host = f"[{host}]"
    return f"inet:{host}:{port}"


def milter_address(socket: str) -> str:
    """libmilter's `inet:8890@127.0.0.1` -> Postfix's `inet:127.0.0.1:8890`."""
    if m := re.fullmatch(r"inet6?:(\d+)(?:@(.+))?", socket):
        port, host = m.group(1), m.group(2) or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"inet:{host}:{port}"
    return "unix:" + socket.split(":", 1)[1]


def main_cf_lines(config: Config, *, milter: bool) -> list[str]:
    """Lines to paste into Postfix's main.cf for the components this process runs."""
    lines = ["# extrusion: add to Postfix's main.cf, then `postfix reload`"]
    if config.policyd.enabled:
        service = (
            f"check_policy_service {{ {policy_address(config.policyd.listen)}, "
            f"timeout={POLICY_TIMEOUT}, try_limit=1, default_action=DUNNO }}"
        )
        lines += [
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
            "reject_unauth_destination",
            f"smtpd_recipient_restrictions = {service}",
            f"smtpd_end_of_data_restrictions = {service}",
        ]
    if milter and config.milter.enabled:
        lines += [
            f"smtpd_milters = {milter_address(config.milter.socket)}",
            "milter_protocol = 6",
            "milter_default_action = accept",
            "milter_mail_macros = i {auth_type} {auth_authen} {auth_author} {mail_addr}",
            "milter_end_of_data_macros = i",
        ]
    return lines
