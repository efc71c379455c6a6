"""The main.cf lines that wire Postfix to this configuration (printed by `extrusion serve`).

They are the settings of the shipped conf/postfix/main.cf.snippet (a test keeps
the two the same), with this configuration's addresses rendered by
`extrusion.postfixaddr`. Every line fails open: with extrusion down, mail
flows unjudged.
"""

from __future__ import annotations

from extrusion import postconf
from extrusion.config import Config
from extrusion.maillog import logpath
from extrusion.postfixaddr import milter_address, policy_address

# The socketmap table name extrusion answers to (extrusion.milter.attach.MAP_NAME).
MILTER_MAP_NAME = "milters"
# Postfix waits this long for a policy answer before using default_action.
POLICY_TIMEOUT = "10s"
# Postfix's compiled-in queue directory, used when postconf cannot say.
DEFAULT_QUEUE_DIRECTORY = "/var/spool/postfix"

RELAY_RESTRICTIONS = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
POLICY_SETTINGS = [
    ("smtpd_policy_service_max_idle", "300s"),
    ("smtpd_policy_service_max_ttl", "1000s"),
]
MILTER_SETTINGS = [
    ("non_smtpd_milters", ""),
    ("milter_protocol", "6"),
    ("milter_default_action", "accept"),
    ("milter_connect_timeout", "5s"),
    ("milter_command_timeout", "10s"),
    ("milter_content_timeout", "30s"),
    ("milter_connect_macros", "j {daemon_name} {daemon_addr} v _ {client_addr} {client_name}"),
    ("milter_helo_macros", "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}"),
    ("milter_mail_macros",
     "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}"),
    ("milter_rcpt_macros", "i {rcpt_addr} {rcpt_host} {rcpt_mailer}"),
    ("milter_end_of_data_macros", "i"),
]
# master.cf: the service that writes maillog_file (conf/postfix/master.cf.snippet).
POSTLOG_SERVICE = "postlog   unix-dgram n  -       n       -       1       postlogd"


def _assign(name: str, value: str) -> str:
    return f"{name} = {value}" if value else f"{name} ="


def policy_service(config: Config) -> str:
    """The check_policy_service entry, fail open: DUNNO when extrusion does not answer."""
    return (f"check_policy_service {{ {policy_address(config.policyd.listen)}, "
            f"timeout={POLICY_TIMEOUT}, try_limit=1, default_action=DUNNO }}")


def milter_map(config: Config) -> str:
    """smtpd_milter_maps: extrusion's socketmap, which attaches the milter only to clients
    under attention (`extrusion.milter.attach`); a failed lookup attaches smtpd_milters."""
    return f"socketmap:{policy_address(config.milter.attach_listen)}:{MILTER_MAP_NAME}"


def master_cf_lines(config: Config) -> list[str]:
    """The master.cf services this configuration needs (postlog when Postfix logs to a file)."""
    return [POSTLOG_SERVICE] if config.maillog.source == "file" else []


def queue_directory(config_dir: str = "") -> str:
    """Postfix's queue_directory as postconf says, else Postfix's default."""
    answer = postconf.value("queue_directory", config_dir)
    return answer if answer.startswith("/") else DEFAULT_QUEUE_DIRECTORY


def main_cf_lines(config: Config, *, milter: bool,
                  queue: str = DEFAULT_QUEUE_DIRECTORY) -> list[str]:
    """Lines to paste into Postfix's main.cf for the components this process runs.

    One line per setting (the snippet's continuation lines joined), comments on lines
    of their own. A milter socket inside `queue` (Postfix's queue_directory) is
    given relative to it, which a chrooted smtpd reaches too.
    """
    lines = ["# extrusion: add to Postfix's main.cf, then `postfix reload`"]
    if config.policyd.enabled:
        lines.append(_assign("smtpd_relay_restrictions", RELAY_RESTRICTIONS))
        try:
            service = policy_service(config)
        except ValueError as exc:  # e.g. a systemd: endpoint; the daemon still runs
            lines.append(f"# {exc}: add check_policy_service with its address yourself")
        else:
            lines += [_assign("smtpd_recipient_restrictions", service),
                      _assign("smtpd_end_of_data_restrictions", service)]
        lines += [_assign(name, value) for name, value in POLICY_SETTINGS]
    if milter and config.milter.enabled:
        try:
            lines.append(_assign("smtpd_milters", milter_address(config.milter.socket, queue)))
        except ValueError as exc:
            lines.append(f"# {exc}: add smtpd_milters with its address yourself")
        if config.milter_maps:
            lines.append(_assign("smtpd_milter_maps", milter_map(config)))
        lines += [_assign(name, value) for name, value in MILTER_SETTINGS]
    source = config.maillog.source
    path = config.maillog.path
    if source == "file" and path == logpath.AUTO:
        path = logpath.postfix_maillog_file(config.policyd.postfix_config_dir)
        if not path:
            lines.append(f"# maillog_file is not set: the log feed follows "
                         f"{logpath.SYSLOG_MAIL_LOG}, where syslog writes Postfix's lines")
            return lines
    if source == "file":
        lines.append(_assign("maillog_file", path))
        lines += ["# and in master.cf, the service that writes maillog_file:"]
        lines += [f"#   {line}" for line in master_cf_lines(config)]
    elif source == "syslog":
        lines.append(f"# leave maillog_file unset and have syslog forward mail.* to "
                     f"extrusion ([maillog] syslog_listen = {config.maillog.syslog_listen})")
    else:
        lines.append("# [maillog] source = \"none\": no delivery outcomes are read; see "
                     "maillog_file in conf/postfix/main.cf.snippet")
    return lines
