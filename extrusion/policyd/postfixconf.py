"""The main.cf lines that wire Postfix to this configuration (printed by `extrusion serve`).

Addresses are translated from extrusion's forms (Twisted endpoint strings,
libmilter sockets) into Postfix's by `extrusion.postfixaddr`. Every
line fails open: with extrusion down, mail flows unjudged.
"""

from __future__ import annotations

from extrusion.config import Config
from extrusion.postfixaddr import milter_address, policy_address

# Postfix waits this long for a policy answer before using default_action.
POLICY_TIMEOUT = "10s"


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
