"""Which parser reads a syslog tag's lines: Postfix's by its service (the tag's last
component), Sendmail's, Exim's, or a spam filter's beside any of them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

from extrusion.maillog import exim, mxlines, postfix, sendmail
from extrusion.maillog.records import Record

Format = Literal["auto", "postfix", "sendmail", "exim"]
Parser = Callable[[str], "tuple[Record, ...] | None"]


def _postfix_parser(service: str) -> Parser:
    return functools.partial(postfix.parse, service)


def postfix_service(program: str, fmt: Format) -> str | None:
    """The Postfix service a syslog tag names (its last component), or None."""
    _head, slash, last = program.rpartition("/")
    if fmt in ("auto", "postfix") and (slash or fmt == "postfix") and last in postfix.SERVICES:
        return last
    return None


def choose_parser(program: str, fmt: Format) -> Parser | None:
    """The parser for a syslog tag, or None for programs that are not an MTA we read."""
    service = postfix_service(program, fmt)
    if service is not None:
        return _postfix_parser(service)
    _head, slash, last = program.rpartition("/")
    if fmt in ("auto", "sendmail") and not slash and last in sendmail.PROGRAMS:
        return sendmail.parse
    if fmt in ("auto", "exim") and last.startswith("exim"):
        return exim.parse
    if not slash and last in mxlines.FILTER_PROGRAMS:
        # A spam filter's verdicts, beside whichever MTA's log.
        return functools.partial(mxlines.parse_filter, last)
    return None
