"""Who this host's MTA is: the one name its messages are stored under.

A message is identified by (MTA name, queue id). The milter and the log feed
both report each message, so both must label it with the same name, without
the operator having to set one:

- `[general] hostname`, when set, is the name, for both.
- Unset, the name is this machine's host name (`socket.gethostname()`); the
  log feed files under it every line whose host field is one of this host's
  names (`local_names`): the machine's name or Postfix's `myhostname`, each
  also by its first label, which is what syslog and Postfix's own
  `maillog_file` write. Lines of other hosts (a syslog server collecting
  several MTAs) keep their own host field.

`check-config --mta postfix` reads the tail of the log and reports a host
field that is none of these names: its messages would be counted twice.
"""

from __future__ import annotations

import functools
import os
import socket

from extrusion import postconf
from extrusion.config import Config
from extrusion.maillog.lines import LineSplitter


def mta_name(config: Config) -> str:
    """The name this host's messages are stored under."""
    return config.general.hostname or socket.gethostname()


def local_names(config: Config) -> tuple[str, ...]:
    """Host fields of log lines that mean this host's MTA (empty when a name is set:
    then every line of the log is this host's)."""
    if config.general.hostname:
        return ()
    return names_of(socket.gethostname(), postfix_myhostname(config.policyd.postfix_config_dir))


def names_of(*hostnames: str) -> tuple[str, ...]:
    """Each name and its first label, lower-cased, without repeats."""
    out: dict[str, None] = {}
    for name in hostnames:
        name = name.strip().rstrip(".").lower()
        if name:
            out[name] = None
            out[name.partition(".")[0]] = None
    return tuple(out)


@functools.lru_cache(maxsize=8)
def postfix_myhostname(config_dir: str = "") -> str:
    """Postfix's `myhostname` ("" where Postfix is not installed or postconf fails)."""
    return postconf.value("myhostname", config_dir)


#: How much of the end of the log `foreign_hosts` reads.
TAIL_BYTES = 256 * 1024


def foreign_hosts(path: str, names: tuple[str, ...], tail_bytes: int = TAIL_BYTES) -> list[str]:
    """Host fields of Postfix lines near the end of the log at `path` that are none of
    `names`, most frequent first ([] when the log cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            data = f.read(tail_bytes)
    except OSError:
        return []
    splitter = LineSplitter()
    counts: dict[str, int] = {}
    for raw in data.decode("utf-8", "replace").splitlines()[1:]:  # the first may be cut
        parts = splitter.parts(raw)
        if parts is None or not parts[2].startswith("postfix"):
            continue
        host = parts[1]
        if host.lower() not in names:
            counts[host] = counts.get(host, 0) + 1
    return sorted(counts, key=lambda h: -counts[h])
