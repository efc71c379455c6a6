"""Which file the log feed follows when `[maillog] path = "auto"`.

Postfix writes its log to `maillog_file` when that is set (Postfix 3.4+, the
postlog service), else through syslog, which on Debian writes mail.* to
/var/log/mail.log. "auto" asks `postconf` once, when the feed starts, so a
changed main.cf is followed after a restart without editing extrusion's config.
"""

from __future__ import annotations

import os
import shutil
import subprocess

AUTO = "auto"
SYSLOG_MAIL_LOG = "/var/log/mail.log"
SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# postconf answers in milliseconds; a hung one must not hold the daemon's start-up.
POSTCONF_TIMEOUT = 10.0


def postfix_maillog_file(config_dir: str = "") -> str:
    """Postfix's `maillog_file` ("" when unset, or postconf missing, failing or slow)."""
    exe = shutil.which("postconf", path=f"{SBIN_PATH}:{os.environ.get('PATH', '')}")
    if exe is None:
        return ""
    args = [exe, *(["-c", config_dir] if config_dir else []), "-xh", "maillog_file"]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=POSTCONF_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def resolve(path: str, config_dir: str = "") -> tuple[str, str]:
    """(the file to follow, why that one) for a `[maillog] path` value."""
    if path != AUTO:
        return path, "[maillog] path"
    if found := postfix_maillog_file(config_dir):
        return found, "auto: Postfix's maillog_file"
    return SYSLOG_MAIL_LOG, "auto: Postfix's maillog_file is not set, syslog's mail log"
