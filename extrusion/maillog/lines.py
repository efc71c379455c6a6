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


# Every two-digit seconds field the classic expression accepts ("60" to "99" too, as it
# does), with the value float() gives it: one lookup checks and converts.
SECONDS = {f"{n:02d}": float(n) for n in range(100)}
# What follows the minute in a line the shortcut reads, up to its message: the seconds,
# `host prog` up to the first "[", a pid of digits (`\d`, as the expression's) and ": ".
# Matched from the seconds on: one call in C instead of a find() and a slice per field.
# `LogFeed.lines()` reads a batch's lines with the same expression (its seconds and head
# as one group) and tables, inline.
AFTER_MINUTE = re.compile(r"(\d\d) ([^\[]*)\[\d+\]: ")
# Distinct `host prog` heads remembered; a flood of forged ones is read the slow way.
MAX_HEADS = 1000


class ClassicShortcut:
    """Reads a classic line without the regular expression when the expression has
    already read one of the same minute and the same `host prog[`.

    Nearly every line of a busy log shares both with the line before it, so the
    stamp is a prefix comparison and a table lookup, the tag one dictionary
    lookup, and what lies between them one match of a small expression (no
    month, day or clock to read). Whatever differs in the least (another minute, seconds with a
    fraction, a tag without a pid, a pid that is not digits) returns None and
    goes to `CLASSIC_LINE`, so what is accepted, and how it is split, stays the
    expression's. `learn()` keeps the minute in step with the `SyslogClock`
    that converted it: the caller must call `forget_minute()` whenever that
    clock converts a stamp without `learn()` after it.
    """

    __slots__ = ("_base", "_heads", "_prefix", "_seconds_at")

    def __init__(self) -> None:
        self._heads: dict[str, tuple[str, str]] = {}
        self._base = 0.0
        self.forget_minute()

    def split(self, text: str) -> tuple[float, str, str, str] | None:
        """(time, host, program, message) of a line like those learned, else None."""
        if not text.startswith(self._prefix):
            return None
        m = AFTER_MINUTE.match(text, self._seconds_at)
        if m is None:
            return None
        seconds, head = m.groups()
        second = SECONDS.get(seconds)
        tag = self._heads.get(head)
        if second is None or tag is None:
            return None
        # `.` of the expression stops at a newline: so does the message.
        start = m.end()
        end = text.find("\n", start)
        return self._base + second, tag[0], tag[1], text[start:] if end < 0 else text[start:end]

    @property
    def heads(self) -> dict[str, tuple[str, str]]:
        """The `host prog` heads learned, to (host, program): one dictionary throughout."""
        return self._heads

    def minute(self) -> tuple[str, int, float]:
        """The minute learned: the line's start up to its seconds, where they start, and
        the time of the minute."""
        return self._prefix, self._seconds_at, self._base

    def learn(self, text: str, m: re.Match[str], minute: float) -> None:
        """Remember the minute and the tag of a line `CLASSIC_LINE` matched (`m`), whose
        stamp the clock converted last (`minute`: the clock's `minute`)."""
        at = m.start(5)
        self._prefix, self._seconds_at, self._base = text[:at], at, minute
        if m.group(8) is not None and len(self._heads) < MAX_HEADS:
            host, program = m.group(6), m.group(7)
            self._heads.setdefault(host + " " + program, (host, program))

    def forget_minute(self) -> None:
        """The clock converted a stamp this shortcut did not see: read the next the slow way."""
        # The seconds would be read from the prefix's own first character, "\0", which is
        # no digit: no line passes, whatever it starts with.
        self._prefix, self._seconds_at = "\0", 0
