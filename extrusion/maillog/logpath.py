"""Which file the log feed follows when `[maillog] path = "auto"`.

Postfix writes its log to `maillog_file` when that is set (Postfix 3.4+, the
postlog service), else through syslog, which on Debian writes mail.* to
/var/log/mail.log. "auto" asks `postconf` once, when the feed starts, so a
changed main.cf is followed after a restart without editing extrusion's config.
"""

from __future__ import annotations

from extrusion import postconf

AUTO = "auto"
SYSLOG_MAIL_LOG = "/var/log/mail.log"


def postfix_maillog_file(config_dir: str = "") -> str:
    """Postfix's `maillog_file` ("" when unset, or postconf missing, failing or slow)."""
    return postconf.value("maillog_file", config_dir, expand=True)


def resolve(path: str, config_dir: str = "") -> tuple[str, str]:
    """(the file to follow, why that one) for a `[maillog] path` value."""
    if path != AUTO:
        return path, "[maillog] path"
    if found := postfix_maillog_file(config_dir):
        return found, "auto: Postfix's maillog_file"
    return SYSLOG_MAIL_LOG, "auto: Postfix's maillog_file is not set, syslog's mail log"
