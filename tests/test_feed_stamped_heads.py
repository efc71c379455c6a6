"""`LogFeed.lines()` finds a line's seconds and route with one look-up of `SS host prog`:
it reads every line as `line()` does, whatever its seconds (`60` to `99`, a fraction,
other digits), its head, and with the table of routes full."""

from __future__ import annotations

import random

import pytest

from extrusion.maillog import feed as feed_module

from .test_postfix_lanes import QID, read

_SECONDS = ["00", "07", "30", "59", "60", "99", "5", "07.25", "\u0663\u0664", "0x", "7 "]
_HOSTS = ["mx1", "mx2", "relay-3.example", "h\u00e9"]
_PROGRAMS = ["postfix/smtpd", "postfix/qmgr", "postfix/cleanup", "postfix/smtp",
             "postfix/submission/smtpd", "postfix/bounce", "postfix/anvil", "sendmail"]
_MESSAGES = ["connect from a[192.0.2.9]", f"{QID}: client=a[192.0.2.9]",
             f"{QID}: message-id=<1@a>", f"{QID}: from=<a@b>, size=9, nrcpt=1 (queue active)",
             f"{QID}: to=<c@d>, relay=x[192.0.2.4]:25, delay=1, dsn=2.0.0, status=sent (250 ok)",
             f"{QID}: removed", "disconnect from a[192.0.2.9] ehlo=1 auth=0/1 commands=1/2",
             "statistics: max connection rate 1/60s"]


def lines(n: int, seed: int) -> list[str]:
    r = random.Random(seed)
    out = []
    for i in range(n):
        minute = i // 40  # a run of lines of each minute, as a log has them
        seconds = r.choice(_SECONDS) if r.random() < 0.2 else f"{r.randrange(60):02d}"
        out.append(f"Dec  5 10:{minute % 60:02d}:{seconds} {r.choice(_HOSTS)} "
                   f"{r.choice(_PROGRAMS)}[{r.randrange(1, 99999)}]: {r.choice(_MESSAGES)}\n")
    return out


@pytest.mark.parametrize("cap", [None, 0, 5])
@pytest.mark.parametrize("seed", [1, 2])
def test_lines_read_seconds_and_heads_as_line_does(cap: int | None, seed: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if cap is not None:  # the table of routes full from the start, or soon
        monkeypatch.setattr(feed_module, "MAX_STAMPED_HEADS", cap)
    log = lines(3000, seed)
    one_at_a_time = read(log, lanes=True)
    assert read(log, lanes=True, batch=500)[0] == one_at_a_time[0]
    assert read(log, lanes=True, batch=len(log))[1][-5:] == one_at_a_time[1][-5:]
    assert len(one_at_a_time[0]) > 100
