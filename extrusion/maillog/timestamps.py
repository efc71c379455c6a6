"""Log timestamps to POSIX seconds: classic syslog, RFC 3339 and Exim's own format.

Classic syslog stamps (`Nov  2 10:47:15`, also Postfix's `maillog_file`,
optionally with `.123456`) carry no year. `SyslogClock` infers it: the first
stamp takes the year of a reference time (rolled back a year if that would put
it in the future), and later stamps follow the log forward, so a log running
from December into January gets the right year on both sides.
"""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}

# A stamp this far before the previous one means the log crossed New Year;
# one this far after it is a late line from the old year (logs interleave a little).
_HALF_YEAR = 183 * 86400.0
# A first stamp may run ahead of the reference clock by this much (clock skew
# between hosts) before it is taken to belong to the previous year.
_FUTURE_SLACK = 2 * 86400.0


def log_zone(name: str) -> dt.tzinfo | None:
    """The named zone, or None for the machine's local time ("")."""
    return ZoneInfo(name) if name else None


class SyslogClock:
    """Turns year-less syslog stamps into POSIX seconds, keeping the year in step."""

    __slots__ = ("_key", "_key_base", "_last", "_reference", "_tz", "_year")

    def __init__(self, reference: float | None = None, tz: dt.tzinfo | None = None) -> None:
        self._reference = time.time() if reference is None else reference
        self._tz = tz
        self._year: int | None = None
        self._last = 0.0
        self._key = ""
        self._key_base = 0.0

    def stamp(self, month: int, day: int, hour: int, minute: int, second: float) -> float:
        """POSIX seconds of a stamp given without a year. Raises ValueError for a bad date."""
        return self._minute(month, day, hour, minute) + second

    def classic(self, mon: str, day: str, hour: str, minute: str, second: str) -> float:
        """The same from the text fields of `Nov  2 10:47:15[.123456]`."""
        key = mon + day + hour + minute
        # Logs are mostly in order: the minute of the previous line is usually this one's.
        if key != self._key:
            month = MONTHS.get(mon)
            if month is None:
                raise ValueError(f"bad month {mon!r}")
            self._key_base = self._minute(month, int(day), int(hour), int(minute))
            self._key = key
        return self._key_base + float(second)

    @property
    def minute(self) -> float:
        """POSIX seconds of the minute `classic()` read last (its stamp without seconds)."""
        return self._key_base

    def _minute(self, month: int, day: int, hour: int, minute: int) -> float:
        if hour > 23 or minute > 59:
            raise ValueError("bad time of day")
        return self._minute_base(month, day, hour, minute)

    def _minute_base(self, month: int, day: int, hour: int, minute: int) -> float:
        if self._year is None:
            year = dt.datetime.fromtimestamp(self._reference, self._tz).year
            base = self._epoch(year, month, day, hour, minute)
            if base > self._reference + _FUTURE_SLACK:
                year -= 1
                base = self._epoch(year, month, day, hour, minute)
            self._year, self._last = year, base
            return base
        year = self._year
        base = self._epoch(year, month, day, hour, minute)
        if base < self._last - _HALF_YEAR:
            # December -> January: the log moved into the next year.
            self._year = year = year + 1
            base = self._epoch(year, month, day, hour, minute)
        elif base > self._last + _HALF_YEAR:
            # A straggler from last year after the change; the year stays.
            return self._epoch(year - 1, month, day, hour, minute)
        if base > self._last:
            self._last = base
        return base

    def _epoch(self, year: int, month: int, day: int, hour: int, minute: int) -> float:
        if month == 2 and day == 29 and not _leap(year):
            # Feb 29 exists only in leap years; a year inferred wrongly would
            # otherwise crash here. Take the nearest leap year back.
            year -= (year % 4) or 4
        return dt.datetime(year, month, day, hour, minute, tzinfo=self._tz).timestamp()


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def parse_rfc3339(text: str, tz: dt.tzinfo | None = None) -> float:
    """`2026-11-30T04:01:19.123456+00:00` (or `Z`, or no offset: then `tz`)."""
    d = dt.datetime.fromisoformat(text)
    if d.tzinfo is None and tz is not None:
        d = d.replace(tzinfo=tz)
    return d.timestamp()


def parse_exim(date: str, clock: str, offset: str = "", tz: dt.tzinfo | None = None) -> float:
    """Exim's `2026-11-30 04:01:19[.123] [+0100]` (local time unless an offset is given)."""
    y, mo, d = int(date[0:4]), int(date[5:7]), int(date[8:10])
    h, mi = int(clock[0:2]), int(clock[3:5])
    s = float(clock[6:])
    zone_: dt.tzinfo | None = tz
    if offset:
        sign = -1 if offset[0] == "-" else 1
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        zone_ = dt.timezone(sign * dt.timedelta(minutes=minutes))
    return dt.datetime(y, mo, d, h, mi, tzinfo=zone_).timestamp() + s


def iso_z(t: float) -> str:
    """POSIX seconds as ISO 8601 in UTC (`2026-11-30T04:01:19Z`), for JSON output."""
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    text = d.isoformat(timespec="milliseconds" if t % 1 else "seconds")
    return text.replace("+00:00", "Z")
