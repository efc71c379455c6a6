"""One value of Postfix's effective config, asked of `postconf -h`, bounded in time.

For the start-up banner and the log feed's host names: "" where Postfix is not
installed, postconf fails or hangs, so callers fall back to a default.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time

SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# postconf answers in milliseconds; a hung one must not hold up start-up for long.
POSTCONF_SECONDS = 10.0
# What Postfix's programs write before they give up: postconf then sleeps a second
# before it exits (as every Postfix program after a fatal error), which nobody waits for.
FATAL = b"fatal: "


def value(name: str, config_dir: str = "", *, expand: bool = False) -> str:
    """`postconf [-c config_dir] -h name` (`-xh` with `expand`: `$name` references
    expanded), or "" when it cannot be had."""
    exe = shutil.which("postconf", path=f"{SBIN_PATH}:{os.environ.get('PATH', '')}")
    if exe is None:
        return ""
    argv = [exe, *(["-c", config_dir] if config_dir else []), "-xh" if expand else "-h", name]
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError:
        return ""
    with proc:
        out = _answer(proc)
        if out is None:
            proc.kill()  # failed (its one-second sleep) or hung: the answer is ""
            return ""
    return out.decode("utf-8", "replace").strip() if proc.returncode == 0 else ""


def _answer(proc: subprocess.Popen[bytes]) -> bytes | None:
    """postconf's standard output once it has exited; None as soon as it reports a fatal
    error (a host with Postfix installed but no `main.cf`), or after POSTCONF_SECONDS."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + POSTCONF_SECONDS
    out: list[bytes] = []
    err = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for key, _events in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    out.append(chunk)
                else:
                    err += chunk
                    if FATAL in err:
                        return None
    try:
        proc.wait(max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        return None
    return b"".join(out)
