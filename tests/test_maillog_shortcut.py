"""The classic-line shortcut: whatever it reads, it reads as the expression does.

`ClassicShortcut` skips `CLASSIC_LINE` for a line with the minute and the
`host prog[` of a line the expression read before; anything it is not sure of
it hands back (None) to the expression, and the feed must count, split and
join exactly as it did without it.
"""

from __future__ import annotations

import pytest

from extrusion.maillog.feed import LogFeed
from extrusion.maillog.lines import CLASSIC_LINE, ClassicShortcut
from extrusion.maillog.timestamps import SyslogClock

from .maillog_helpers import REFERENCE, Recorder

FIRST = "Dec  5 02:53:38 smtp1 postfix/smtpd[19479]: connect from a[192.0.2.1]\n"


def learned(line: str = FIRST) -> tuple[ClassicShortcut, SyslogClock]:
    clock, shortcut = SyslogClock(REFERENCE), ClassicShortcut()
    m = CLASSIC_LINE.match(line)
    assert m is not None
    clock.classic(*m.groups()[:5])
    shortcut.learn(line, m, clock.minute)
    return shortcut, clock


def test_nothing_is_read_before_a_line_was_learned() -> None:
    assert ClassicShortcut().split(FIRST) is None


@pytest.mark.parametrize("line", [
    "Dec  5 02:53:59 smtp1 postfix/smtpd[7]: 03D3C01A2A: client=a[192.0.2.1]\n",
    "Dec  5 02:53:00 smtp1 postfix/smtpd[1]: \n",
    "Dec  5 02:53:07 smtp1 postfix/smtpd[19479]: text: with [brackets] and ]: marks",
    "Dec  5 02:53:99 smtp1 postfix/smtpd[19479]: seconds the expression takes too\n",
    "Dec  5 02:53:38 smtp1 postfix/smtpd[19479]: cut\nat a newline\n",
    "Dec  5 02:53:38 smtp1 postfix/smtpd[19479]: ends with CR\r\n",
    "Dec  5 02:53:38 smtp1 postfix/smtpd[\u0663\u0663]: Arabic-Indic digits, which \\d takes\n",
])
def test_a_line_like_the_learned_one_splits_as_the_expression_splits_it(line: str) -> None:
    shortcut, clock = learned()
    m = CLASSIC_LINE.match(line)
    assert m is not None
    mon, day, hh, mm, ss, host, program, _pid, message = m.groups()
    assert shortcut.split(line) == (clock.classic(mon, day, hh, mm, ss), host, program, message)


@pytest.mark.parametrize("line", [
    "Dec  5 02:54:01 smtp1 postfix/smtpd[19479]: another minute\n",
    "Dec  5 02:53:38.125 smtp1 postfix/smtpd[19479]: a fraction\n",
    "Dec  5 02:53:38 smtp1 postfix/qmgr[1234]: another tag\n",
    "Dec  5 02:53:38 smtp2 postfix/smtpd[19479]: another host\n",
    "Dec  5 02:53:38 smtp1 postfix/smtpd: no pid\n",
    "Dec  5 02:53:38 smtp1 postfix/smtpd[12a]: a pid of letters\n",
    "Dec  5 02:53:38 smtp1 postfix/smtpd[1] no colon\n",
    "Dec  5 02:53:38 smtp1 postfix/smtpd",
    "Dec  5 02:53:3",
    "Dec  5 02:53:x8 smtp1 postfix/smtpd[1]: not a second\n",
])
def test_anything_else_goes_to_the_expression(line: str) -> None:
    shortcut, _clock = learned()
    assert shortcut.split(line) is None


def test_forgetting_the_minute_sends_the_next_line_to_the_expression() -> None:
    shortcut, _clock = learned()
    shortcut.forget_minute()
    assert shortcut.split(FIRST) is None
    # Not even a line that starts with the character the forgotten state holds.
    assert shortcut.split("\0" + FIRST[1:]) is None


def feed_of(lines: list[str], *, learn: bool) -> tuple[Recorder, LogFeed, list[float]]:
    rec = Recorder()
    feed = LogFeed(rec, reference_time=REFERENCE)
    clocks = []
    for line in lines:
        if not learn:
            feed._shortcut.forget_minute()  # every line the expression's way
        feed.line(line)
        clocks.append(feed.now)
    feed.finish()
    return rec, feed, clocks


def test_the_feed_gives_the_same_events_stats_and_clock_with_and_without_it() -> None:
    lines = [
        FIRST,
        "Dec  5 02:53:38 smtp1 postfix/smtpd[19479]: 03D3C01A2A: client=a[192.0.2.1]\n",
        "Dec  5 02:53:38 smtp1 postfix/qmgr[1234]: 03D3C01A2A: from=<a@b.example>, "
        "size=10, nrcpt=1 (queue active)\n",
        "Dec  5 02:53:38 smtp1 postfix/smtpd[19479]: disconnect from a[192.0.2.1] commands=2\n",
        "Dec  5 02:53:39 smtp1 postfix/smtpd[19479]: garbage that is read as nothing\n",
        "Dec  5 02:53:39 smtp1 postfix/smtp[4]: 03D3C01A2A: to=<c@d.example>, relay=x[1.2.3.4]:25, "
        "delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)\n",
        "Dec  5 02:53:39 smtp1 postfix/smtp[4]: 03D3C01A2A: to=<c@d.example>, cut sh\n",
        "Dec 31 02:53:39 smtp1 postfix/smtp[4]: a day the log did not reach\n",
        "Feb 30 02:53:39 smtp1 postfix/smtp[4]: a day no month has\n",
        "Dec  5 02:53:40 smtp1 postfix/qmgr[1234]: 03D3C01A2A: removed\n",
        "not a log line at all\n",
        "Dec  5 02:54:41 smtp1 postfix/qmgr[1234]: 03D3C01A2A: removed\n",
    ]
    with_it, feed_with, clocks_with = feed_of(lines, learn=True)
    without, feed_without, clocks_without = feed_of(lines, learn=False)
    assert with_it.events == without.events and len(with_it.events) == 2
    assert feed_with.stats == feed_without.stats and feed_with.stats.garbled == 3
    assert clocks_with == clocks_without
