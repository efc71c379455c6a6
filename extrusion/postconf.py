"""One value of Postfix's effective config, asked of `postconf -h`, bounded in time.

For the start-up banner and the log feed's host names: "" where Postfix is not
installed, postconf fails or hangs, so callers fall back to a default.
"""

from __future__ import annotations

import os
import shutil
import subprocess

SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# postconf answers in milliseconds; a hung one must not hold up start-up for long.
POSTCONF_SECONDS = 10.0


def value(name: str, config_dir: str = "", *, expand: bool = False) -> str:
    """`postconf [-c config_dir] -h name` (`-xh` with `expand`: `$name` references
    expanded), or "" when it cannot be had."""
    exe = shutil.which("postconf", path=f"{SBIN_PATH}:{os.environ.get('PATH', '')}")
    if exe is None:
        return ""
    argv = [exe, *(["-c", config_dir] if config_dir else []), "-xh" if expand else "-h", name]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=POSTCONF_SECONDS,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""
