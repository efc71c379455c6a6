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
field that is none of these names (`extrusion.maillog.hosts`): its messages
would be counted twice.
"""

from __future__ import annotations

import functools
import socket

from extrusion import postconf
from extrusion.config import Config


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
