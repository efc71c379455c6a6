"""Split one log line into time, host, program, pid and message.

Three layouts are recognised: classic syslog (`Nov  2 10:47:15 host prog[pid]: msg`,
which is also what Postfix's own `maillog_file` writes, optionally with
microseconds), RFC 3339 (`2026-11-30T04:01:19.123+01:00 host prog[pid]: msg`,
rsyslog's high-precision format and journalctl's short-iso) and Exim's own
main log (`2026-11-30 04:01:19 1tHxyz-000ABC-12 <= …`, no host or program).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from extrusion.maillog.timestamps import SyslogClock, parse_exim, parse_rfc3339

EXIM_PROGRAM = "exim"
# The longest line read (characters, or bytes before decoding): no MTA writes one
# near this long (Postfix cuts its own at 2 KiB, syslog daemons at 8 KiB), and a
# longer one is counted as garbled and skipped, never held in memory whole.
MAX_LINE = 64 << 10


@dataclass(frozen=True, slots=True)
class LogLine:
    time: float
    host: str
    program: str  # the syslog tag without pid, e.g. "postfix/submission/smtpd"
    pid: str
    message: str


_CLASSIC = re.compile(
    r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d(?:\.\d{1,9})?)"
    r" (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: (.*)",
    re.DOTALL,
)
# The same without DOTALL: the message stops before a trailing newline (the fast path).
CLASSIC_LINE = re.compile(_CLASSIC.pattern)
_ISO = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)"
    r" (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: (.*)",
    re.DOTALL,
)
_EXIM = re.compile(
    r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d{3})?)(?: ([+-]\d{4}))?(?: \[(\d+)\])? (.*)",
    re.DOTALL,
)


class LineSplitter:
    """Stateful (the syslog year) splitter of raw lines into `LogLine`s."""

    __slots__ = ("clock", "tz")

    def __init__(self, reference: float | None = None, tz: dt.tzinfo | None = None) -> None:
        self.clock = SyslogClock(reference, tz)
        self.tz = tz

    def split(self, text: str) -> LogLine | None:
        """The parts of a line, or None when it is not a log line we can read."""
        parts = self.parts(text)
        return None if parts is None else LogLine(*parts)

    def parts(self, text: str) -> tuple[float, str, str, str, str] | None:
        """`split()` as a plain tuple (time, host, program, pid, message): the fast path."""
        text = text.rstrip("\r\n")
        if not text:
            return None
        first = text[0]
        try:
            if first.isalpha():
                m = _CLASSIC.match(text)
                if m is None:
                    return None
                mon, day, hh, mm, ss, host, prog, pid, msg = m.groups()
                return self.clock.classic(mon, day, hh, mm, ss), host, prog, pid or "", msg
            if first.isdigit():
                if len(text) > 10 and text[10] == "T":
                    m = _ISO.match(text)
                    if m is None:
                        return None
                    stamp, host, prog, pid, msg = m.groups()
                    return parse_rfc3339(stamp, self.tz), host, prog, pid or "", msg
                m = _EXIM.match(text)
                if m is None:
                    return None
                date, clock, offset, pid, msg = m.groups()
                t = parse_exim(date, clock, offset or "", self.tz)
                return t, "", EXIM_PROGRAM, pid or "", msg
        except (ValueError, OverflowError):
            # Digits in the right places but not a date (Feb 31, hour 25): garbled.
            return None
        return None
