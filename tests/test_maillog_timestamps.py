"""Timestamps and line headers: classic syslog (no year), RFC 3339, Exim, Postfix's own."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from extrusion.maillog.lines import LineSplitter
from extrusion.maillog.timestamps import SyslogClock, iso_z, parse_exim, parse_rfc3339

UTC = dt.UTC


def ts(*args: int, tz: dt.tzinfo = UTC) -> float:
    return dt.datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def clock(*ref: int) -> SyslogClock:
    return SyslogClock(ts(*ref), UTC)


def test_year_comes_from_the_reference_time() -> None:
    assert clock(2026, 12, 1).stamp(11, 30, 4, 1, 19.0) == ts(2026, 11, 30, 4, 1, 19)


def test_a_stamp_in_the_future_belongs_to_last_year() -> None:
    # Reading December's log on the 1st of December... of the next year's log run.
    assert clock(2027, 1, 5).stamp(12, 28, 10, 0, 0.0) == ts(2026, 12, 28, 10)


def test_log_crossing_new_year_moves_to_the_next_year() -> None:
    c = clock(2027, 1, 5)
    assert c.stamp(12, 31, 23, 59, 58.0) == ts(2026, 12, 31, 23, 59, 58)
    assert c.stamp(1, 1, 0, 0, 3.0) == ts(2027, 1, 1, 0, 0, 3)
    assert c.stamp(1, 4, 12, 0, 0.0) == ts(2027, 1, 4, 12)


def test_a_late_line_from_the_old_year_keeps_its_year() -> None:
    c = clock(2027, 1, 5)
    c.stamp(12, 31, 23, 59, 0.0)
    c.stamp(1, 1, 0, 0, 1.0)
    assert c.stamp(12, 31, 23, 59, 59.0) == ts(2026, 12, 31, 23, 59, 59)
    assert c.stamp(1, 1, 0, 1, 0.0) == ts(2027, 1, 1, 0, 1)


def test_a_year_long_log_keeps_counting() -> None:
    c = clock(2026, 3, 1)
    times = [c.stamp(m, 1, 0, 0, 0.0) for m in (3, 6, 9, 12, 1, 2)]
    assert times == sorted(times)
    assert times[-1] == ts(2027, 2, 1)


def test_february_29th_in_a_non_leap_year_does_not_crash() -> None:
    t = clock(2027, 3, 10).stamp(2, 29, 12, 0, 0.0)
    assert dt.datetime.fromtimestamp(t, UTC).month == 2


def test_local_time_zone_of_classic_stamps() -> None:
    oslo = ZoneInfo("Europe/Oslo")
    c = SyslogClock(ts(2026, 12, 1), oslo)
    assert c.stamp(11, 30, 4, 1, 19.0) == ts(2026, 11, 30, 3, 1, 19)


def test_rfc3339_and_exim_stamps() -> None:
    assert parse_rfc3339("2026-11-30T04:01:19.250000+01:00") == ts(2026, 11, 30, 3, 1, 19) + 0.25
    assert parse_rfc3339("2026-11-30T04:01:19Z") == ts(2026, 11, 30, 4, 1, 19)
    assert parse_rfc3339("2026-11-30T04:01:19", UTC) == ts(2026, 11, 30, 4, 1, 19)
    assert parse_exim("2026-11-30", "04:01:19", "+0100") == ts(2026, 11, 30, 3, 1, 19)
    assert parse_exim("2026-11-30", "04:01:19.500", "", UTC) == ts(2026, 11, 30, 4, 1, 19) + 0.5


def test_iso_output_is_utc() -> None:
    assert iso_z(ts(2026, 11, 30, 4, 1, 19)) == "2026-11-30T04:01:19Z"
    assert iso_z(ts(2026, 11, 30, 4, 1, 19) + 0.5) == "2026-11-30T04:01:19.500Z"


# --- line headers ----------------------------------------------------------------------------


@pytest.fixture
def split() -> LineSplitter:
    return LineSplitter(ts(2026, 12, 1), UTC)


@pytest.mark.parametrize(
    ("line", "expected_time"),
    [
        ("Nov  2 10:47:15 smtp1 postfix/smtpd[123]: msg", ts(2026, 11, 2, 10, 47, 15)),
        ("Nov 02 10:47:15 smtp1 postfix/smtpd[123]: msg", ts(2026, 11, 2, 10, 47, 15)),
        ("Nov 30 04:01:19.123456 smtp1 postfix/smtpd[123]: msg",
         ts(2026, 11, 30, 4, 1, 19) + 0.123456),
        ("2026-11-30T04:01:19.123456+00:00 smtp1 postfix/smtpd[123]: msg",
         ts(2026, 11, 30, 4, 1, 19) + 0.123456),
        ("2026-11-30T05:01:19+01:00 smtp1 postfix/smtpd[123]: msg", ts(2026, 11, 30, 4, 1, 19)),
    ],
)
def test_header_layouts(split: LineSplitter, line: str, expected_time: float) -> None:
    parts = split.split(line + "\n")
    assert parts is not None
    assert parts.time == pytest.approx(expected_time, abs=1e-6)
    assert (parts.host, parts.program, parts.pid, parts.message) == (
        "smtp1", "postfix/smtpd", "123", "msg")


def test_tag_without_pid_and_exim_main_log(split: LineSplitter) -> None:
    p = split.split("Nov 30 04:01:19 smtp1 postfix/smtpd: warning: x")
    assert p is not None and (p.program, p.pid, p.message) == ("postfix/smtpd", "", "warning: x")
    e = split.split("2026-11-30 04:01:19 [4321] 1tHxyz-000ABC-12 Completed")
    assert e is not None and (e.program, e.pid, e.message) == (
        "exim", "4321", "1tHxyz-000ABC-12 Completed")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "\n",
        "Nox 30 04:01:19 smtp1 postfix/smtpd[1]: x",
        "Nov 31 04:01:19 smtp1 postfix/smtpd[1]: x",  # no such day
        "Nov 30 25:01:19 smtp1 postfix/smtpd[1]: x",
        "Nov 30 04:01:19 smtp1",  # cut after the host
        "Nov 30 04:0",
        "2026-13-30T04:01:19Z smtp1 postfix/smtpd[1]: x",
        "2026-11-30 04:01",
        "\x00\x00\x00binary",
        "-- MARK --",
    ],
)
def test_unreadable_headers(split: LineSplitter, line: str) -> None:
    assert split.split(line) is None


# --- what Postfix itself writes --------------------------------------------------------------


def test_postfix_maillog_file_lines_as_postlog_writes_them(tmp_path: Path) -> None:
    """postlog(1), with Postfix not running on that config, writes to $maillog_file itself."""
    postlog = shutil.which("postlog") or "/usr/sbin/postlog"
    if not os.path.exists(postlog) or os.geteuid() != 0:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("postlog (Debian package postfix) and root are required in CI")
        pytest.skip("needs Postfix's postlog and root")
    conf = tmp_path / "postfix"
    conf.mkdir()
    logfile = tmp_path / "postfix.log"
    (conf / "main.cf").write_text(
        f"maillog_file = {logfile}\nmaillog_file_prefixes = {tmp_path}\n"
        f"queue_directory = {tmp_path}/queue\n"
    )
    text = "4BxK2v0Hv5z9abc: client=dsl-7.isp.example[192.0.2.7]"
    subprocess.run([postlog, "-c", str(conf), "-t", "postfix-out/submission/smtpd", text],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    line = logfile.read_text().splitlines()[-1]
    parts = LineSplitter().split(line)
    assert parts is not None, line
    assert (parts.program, parts.message) == ("postfix-out/submission/smtpd", text)
    assert parts.pid.isdigit()
    assert abs(parts.time - dt.datetime.now().timestamp()) < 120
