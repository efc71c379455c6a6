"""`extrusion check-config --mta postfix`: is Postfix wired to extrusion the way it must be?

Reads Postfix's effective settings with `postconf -x` (plus `postconf -xP` for
master.cf overrides and `postconf -M` for services) and compares them with
extrusion's own config: the milter attached at the right address with the
macros extrusion reads, the policy service asked after reject_unauth_destination
and before any permit that accepts customers, fail-open actions on both, and
the log feed pointing where extrusion reads. The judgement (`check_postfix`)
is pure so it can be tested on text; `read_postconf` runs the commands.
"""

from __future__ import annotations

from extrusion.mtacheck.checks import Finding, Level, check_postfix, has_errors
from extrusion.mtacheck.lists import Entry, parse_list
from extrusion.mtacheck.postconf import (
    PostconfError,
    PostconfView,
    parse_assignments,
    read_postconf,
    seconds,
)

__all__ = [
    "Entry",
    "Finding",
    "Level",
    "PostconfError",
    "PostconfView",
    "check_postfix",
    "has_errors",
    "parse_assignments",
    "parse_list",
    "read_postconf",
    "seconds",
]
