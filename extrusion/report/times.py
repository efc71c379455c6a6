"""Times in reports: the classic "2007-05-19 10:50:22" form, ISO-8601 for machines, `--since`.

Reports store POSIX seconds; the operator's zone is applied only when
printing (config `report.timezone`), and JSON is always UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class BadTime(ValueError):
    """A `--since` value or a zone name that cannot be understood; phrased for the user."""


def report_zone(name: str) -> tzinfo:
    """`UTC`, `local` (the machine's zone) or an IANA name like `Europe/London`."""
    if name.upper() == "UTC":
        return UTC
    if name == "local":
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadTime(f"unknown time zone {name!r} (use UTC, local or an IANA name)") from None


def classic(t: float, tz: tzinfo = UTC) -> str:
    """`2007-05-19 10:50:22` in `tz`."""
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S")


def iso_or_none(t: float | None) -> str | None:
    """ISO-8601 in UTC with seconds, as the replay JSON uses; None stays None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def zone_label(tz: tzinfo, at: float) -> str:
    return datetime.fromtimestamp(at, tz).tzname() or "UTC"


def parse_since(value: str, now: float) -> float | None:
    """`24h`, `90m`, `7d`, `2w`, `3600s`, an ISO date/time, or `all` (None: no lower bound)."""
    text = value.strip()
    if text.lower() == "all":
        return None
    if m := _DURATION.match(text):
        return now - float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(
            f"--since {value!r}: expected a duration (24h, 90m, 7d), an ISO date or 'all'"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
