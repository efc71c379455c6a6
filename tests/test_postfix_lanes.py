"""Postfix's lanes (`postfixlanes.LaneJoiner`) and the batch feed (`LogFeed.lines`) read
every line as the parser and `line()` do: the same events, in the same order, and every
line counted the same (parsed, ignored, garbled), for ordinary, odd and damaged lines.

The reference is a real `LogFeed` with its lanes turned off (every line through
`postfix.parse()` and `Joiner.add()`), fed one line at a time.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from extrusion.maillog import postfix
from extrusion.maillog.feed import LogFeed
from extrusion.maillog.join import JoinSettings
from extrusion.maillog.records import Delivery

from .maillog_helpers import REFERENCE, Recorder

DATA = Path(__file__).parent / "data" / "maillog" / "postfix-3.7.jsonl"
QID = "4B2C1D3E5F"


def at(second: int, program: str, message: str, host: str = "mx1") -> str:
    return f"Dec  5 10:{second // 60:02d}:{second % 60:02d} {host} {program}[77]: {message}\n"


def message_lines(i: int, qid: str) -> list[str]:
    s = 3 * i
    return [
        at(s, "postfix/smtpd", "connect from dsl-1.example[192.0.2.1]"),
        # Every third a login on the submission port (the lane's field dictionary).
        at(s, "postfix/smtpd", f"{qid}: client=dsl-1.example[192.0.2.1]"
                               + (f", sasl_method=PLAIN, sasl_username=u{i}" if i % 3 == 0
                                  else "")),
        at(s, "postfix/cleanup", f"{qid}: message-id=<{i}@dsl-1.example>"),
        at(s, "postfix/qmgr", f"{qid}: from=<a@customer.example>, size=1200, nrcpt=2 "
                              "(queue active)"),
        at(s, "postfix/smtpd", "disconnect from dsl-1.example[192.0.2.1] ehlo=1 mail=1 rcpt=2 "
                               "data=1 quit=1 commands=6"),
        at(s + 1, "postfix/smtp", "Trusted TLS connection established to mx.example.net"
                                  "[198.51.100.7]:25: TLSv1.3 with cipher X"),
        at(s + 1, "postfix/smtp", f"{qid}: to=<x@example.net>, relay=mx.example.net"
                                  "[198.51.100.7]:25, delay=0.4, delays=0/0/0.2/0.2, dsn=2.0.0, "
                                  "status=sent (250 2.0.0 Ok: queued as 7D)"),
        at(s + 1, "postfix/smtp", f"{qid}: to=<y@example.org>, relay=none, delay=1, "
                                  "dsn=4.4.1, status=deferred (connect to y: refused)"),
        at(s + 2, "postfix/qmgr", f"{qid}: removed"),
    ]


# Lines each lane must hand back, or read exactly as the parser does.
ODD = [
    "NOQUEUE: removed", "NOQUEUE: from=<a@b>, size=1, nrcpt=1", "NOQUEUE: to=<a@b>, relay=x, "
    "dsn=5.0.0, status=bounced (no)", "NOQUEUE: message-id=<x>", "NOQUEUE: client=a[192.0.2.9]",
    "ABCD: removed", "ABCDE: removed", "A" * 20 + ": removed", "A" * 21 + ": removed",
    "ABCDE: removed ", "ABCDE: removedx", "ABCDE:  removed", "AB-DE: removed", "ABCDÉ: removed",
    "ABCDE: from=<a@b>, size=x, nrcpt=1", "ABCDE: from=<a@b>, status=expired, returned",
    "ABCDE: from=<a@b>, size=1, nrcpt=12345678901234567890", "ABCDE: to=<a@b>, relay=x",
    "ABCDE: to=<a@b>, relay=x, dsn=2.0.0, status=sent", "ABCDE: to=<a@b>, relay=x, "
    "dsn=2.0.0, status=sent (a) dsn=5.0.0, status=bounced (b)", "ABCDE: message-id=",
    "ABCDE: message-id=<>", "ABCDE: message-id= <a> ", "ABCDE: client=a[192.0.2.9], "
    "sasl_method=PLAIN, sasl_username=u", "ABCDE: client=a[192.0.2.9", "ABCDE: client=",
    "ABCDE: client=a b[192.0.2.9]", "ABCDE: reject: RCPT from a[192.0.2.9]: 554 5.7.1 no; "
    "from=<a@b> to=<c@d> proto=ESMTP helo=<h>", "connect from", "disconnect from a[192.0.2.9] "
    "ehlo=1 auth=0/1 commands=1/2", "disconnect from a[192.0.2.9] commands=0/3 x",
    "disconnect from [", "ABCDE: x: removed", ": removed", "", "warning: ABCDE: removed",
    "ABCDE: client=a[192.0.2.9], sasl_method=LOGIN, sasl_username=u@b, sasl_sender=s",
    "ABCDE: client=a[192.0.2.9], orig_queue_id=FGHIJ, orig_client=c[192.0.2.10]",
    "ABCDE: client=a[192.0.2.9], orig_client=garbled", "ABCDE: client=a[192.0.2.9], "
    "sasl_username=", "ABCDE: client=a[192.0.2.9, sasl_username=u", "ABCDE: client=a"
    "[192.0.2.9], client=c[192.0.2.10]", "ABCDE: client=a[192.0.2.9], , sasl_username=u",
    "ABCDE: client=a[192.0.2.9], sasl_username=u, client=x", "ABCDE: sasl_username=u, "
    "client=a[192.0.2.9]",
]
PROGRAMS = ["postfix/qmgr", "postfix/cleanup", "postfix/smtpd", "postfix/smtp",
            "postfix/lmtp", "postfix/bounce", "postfix/postscreen", "postfix/pickup",
            "postfix/submission/smtpd", "postfix/anvil", "postfix-out/nqmgr"]


def damaged(lines: list[str], seed: int) -> list[str]:
    """Characters replaced, deleted and inserted, lines cut short, as a torn log has them."""
    r = random.Random(seed)
    out = []
    for line in lines:
        x, i = r.random(), r.randrange(len(line) + 1)
        if x < 0.1:
            line = line[:i] + r.choice("x:[] <>=,.0\n\r\u00e9") + line[i + 1:]
        elif x < 0.15:
            line = line[:i] + line[i + 1:]
        elif x < 0.2:
            line = line[:i]
        elif x < 0.25:
            line = line[:i] + r.choice(["[", "]: ", ": ", "<", ">", ", ", "\r"]) + line[i:]
        out.append(line)
    return out


def read(lines: list[str], *, lanes: bool, batch: int = 0) -> tuple[list[str], list[int]]:
    """Every event (repr, in order) and the feed's counters after each line or batch."""
    rec = Recorder()
    feed = LogFeed(rec, settings=JoinSettings(wait_seconds=5.0), reference_time=REFERENCE)
    if not lanes:
        feed.joiner.lane = lambda service: None  # type: ignore[method-assign]
    counts: list[int] = []
    step = batch or 1
    for i in range(0, len(lines), step):
        if batch:
            feed.lines(lines[i:i + step])
        else:
            feed.line(lines[i])
        s = feed.stats
        counts += [s.lines, s.parsed, s.ignored, s.garbled, len(rec.events)]
    feed.finish()
    return [repr(e) for e in rec.events + rec.evidence_seen], counts


def sample() -> list[str]:
    lines = [row["line"] + "\n" for row in map(json.loads, DATA.read_text().splitlines())]
    for i in range(40):
        lines += message_lines(i, f"{QID[:-2]}{i:02d}")
    lines += [at(200 + i, p, m) for i, m in enumerate(ODD) for p in PROGRAMS]
    return lines


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_the_lanes_read_every_line_as_the_parser_does(seed: int | None) -> None:
    lines = sample() if seed is None else damaged(sample(), seed)
    parser = read(lines, lanes=False)
    assert read(lines, lanes=True) == parser
    assert len(parser[0]) > 50  # the sample makes events, damaged or not


@pytest.mark.parametrize("batch", [1, 7, 4096])
def test_lines_in_batches_count_and_join_as_one_at_a_time(batch: int) -> None:
    lines = damaged(sample(), 4)
    events, counts = read(lines, lanes=True)
    by_batch, batch_counts = read(lines, lanes=True, batch=batch)
    assert by_batch == events
    # After each batch the counters are where line() left them after its last line.
    assert batch_counts == [c for i in range(0, len(lines), batch)
                            for c in counts[5 * min(i + batch, len(lines)) - 5:
                                            5 * min(i + batch, len(lines))]]


def test_a_line_over_the_cap_in_a_batch_is_counted_as_one_too_long() -> None:
    rec = Recorder()
    feed = LogFeed(rec, reference_time=REFERENCE)
    feed.lines([at(0, "postfix/qmgr", "x" * 70_000), at(1, "postfix/qmgr", f"{QID}: removed")])
    assert (feed.stats.lines, feed.stats.too_long, feed.stats.garbled) == (2, 1, 1)


# The expression `postfix.delivery()` replaced: a lazy `.*?` between relay= and dsn=.
_LAZY = re.compile(
    r"to=<([^>]*)>, (?:orig_to=<([^>]*)>, )?relay=([^,]*), .*?"
    r"dsn=(\d\.\d{1,3}\.\d{1,3}), status=([a-z]+)(?: \((.*)\)|, returned to sender)?",
    re.DOTALL,
)
_PIECES = ["to=<", "a@b", ">", ", ", "orig_to=<", "relay=", "x[192.0.2.4]:25", "delay=1",
           "dsn=", "5.1.1", "2.0.0", "status=", "sent", "deferred", "bounced", "x", " (", ")",
           ", returned to sender", "dsn=2.0.0, status=sent", "\n", ",", " ", "1", "."]


def lazy(rest: str) -> Delivery | None:
    m = _LAZY.fullmatch(rest)
    if m is None or m.group(5) not in postfix.DELIVERY_STATUSES:
        return None
    to, orig_to, relay, dsn, status, reply = m.groups()
    return Delivery(QID, to, status, dsn, relay, reply or "", orig_to or "")


def test_a_delivery_line_is_read_as_the_lazy_expression_read_it() -> None:
    r = random.Random(5)
    read_some = 0
    for _ in range(20_000):
        rest = "".join(r.choice(_PIECES) for _ in range(r.randrange(1, 16)))
        if r.random() < 0.5:
            rest = "to=<a@b>, relay=x, " + rest
        expected = lazy(rest)
        assert postfix.delivery(QID, rest) == expected, rest
        read_some += expected is not None
    assert read_some > 100
