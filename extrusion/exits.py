"""The exit statuses of the `extrusion` command in one place (README, "Exit statuses").

Names come from sysexits(3) through `os.EX_*`, so the numbers mean what
a postmaster's scripts already expect; 1 and 2 are the two that are not
sysexits: a run that finished and found problems, and click's status for
a command line it could not parse.
"""

from __future__ import annotations

import os

EX_OK = os.EX_OK  # 0
EX_FAILURE = 1  # finished and found problems (check-config --mta), interrupted, forced stop
EX_CLI_USAGE = 2  # the command line itself (click's status): unknown option, missing argument
EX_USAGE = os.EX_USAGE  # 64: a malformed sender key
EX_DATAERR = os.EX_DATAERR  # 65: input that is no good: a key traffic never has, a non-log
EX_NOINPUT = os.EX_NOINPUT  # 66: no such sender in the store, no such log file, a directory
EX_UNAVAILABLE = os.EX_UNAVAILABLE  # 69: store or port unavailable, a missing library
EX_SOFTWARE = os.EX_SOFTWARE  # 70: an internal error (a component or the log reader died)
EX_CANTCREAT = os.EX_CANTCREAT  # 73: the store or an output file cannot be created
EX_CONFIG = os.EX_CONFIG  # 78: the config file is wrong

__all__ = [
    "EX_CANTCREAT",
    "EX_CLI_USAGE",
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_FAILURE",
    "EX_NOINPUT",
    "EX_OK",
    "EX_SOFTWARE",
    "EX_UNAVAILABLE",
    "EX_USAGE",
]
