"""Hostile and corrupted log lines: no parser raises, the feed counts them and moves on.

Fuzzed (arbitrary text, and real Postfix, Sendmail and Exim lines mutated a
few characters at a time) and, for the line that once wedged the live feed,
replayed exactly: the file feed reads past it and checkpoints, `replay`
counts it and exits 0.
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task

from extrusion.maillog import exim, postfix, sendmail
from extrusion.maillog.feed import EXAMPLE_CHARS, LogFeed
from extrusion.maillog.feedsink import FeedStats
from extrusion.maillog.lines import MAX_LINE, LineSplitter
from extrusion.maillog.syslog import FAILURES_LOGGED, SyslogParser, SyslogProtocol
from extrusion.policyd.feed import FileFeedService
from extrusion.policyd.metrics import Metrics
from extrusion.replay.input import read_lines
from extrusion.scoring.engine import Engine
from extrusion.scoring.store import Store

from .maillog_helpers import REFERENCE, Recorder, feed_lines
from .test_maillog_feed import accepted, at, bounced, deferred, sent
from .test_maillog_postfix import SENT
from .test_maillog_sendmail_exim import (
    EX_ARRIVAL,
    EX_DEFER,
    EX_FAIL,
    EX_SENT,
    EX_UNROUTEABLE,
    SM_AUTH,
    SM_DEFERRED,
    SM_FROM,
    SM_SENT,
    SM_UNKNOWN,
)
from .test_policyd_support import make_config

# The line of issue 14: a byte where ", " belongs made `nrcpts=4,\x93msgid=…` one field.
WEDGE = ("4AU41J1a021499: from=<alice@customer.example>, size=2206, class=0, nrcpts=4,\x93"
         "msgid=<20261130040119.GA1@pc7.home>, bodytype=8BITMIME, proto=ESMTPA, daemon=MTA, "
         "relay=dsl-7.isp.example [192.0.2.7]")

POSTFIX_MESSAGES = [
    SENT,
    sent("3F2A1B0C9D", "bob@example.org"),
    bounced("3F2A1B0C9D", "nobody@example.net"),
    deferred("3F2A1B0C9D", "dave@slow.example"),
    "3F2A1B0C9D: from=<alice@customer.example>, size=2206, nrcpt=2 (queue active)",
    "3F2A1B0C9D: client=dsl-7.isp.example[192.0.2.7], sasl_method=PLAIN, sasl_username=alice",
    "3F2A1B0C9D: message-id=<x@pc7.home>",
    "NOQUEUE: reject: RCPT from unknown[198.18.7.20]: 554 5.7.1 <x@y.example>: Relay access "
    "denied; from=<spam@x.example> to=<x@y.example> proto=ESMTP helo=<bot>",
    "3F2A1B0C9D: milter-hold: END-OF-MESSAGE from pc[192.0.2.7]: milter triggers HOLD action;"
    " from=<a@b.example> to=<c@d.example> proto=ESMTP helo=<pc>",
    "3F2A1B0C9D: sender non-delivery notification: 4B3C2D1E0F",
    "3F2A1B0C9D: uid=1000 from=<alice>",
    "3F2A1B0C9D: removed",
]
SENDMAIL_MESSAGES = [SM_FROM, SM_AUTH, SM_SENT, SM_UNKNOWN, SM_DEFERRED, WEDGE,
                     "4AU41J1a021407: 4AU41J1b021407: DSN: User unknown",
                     "ruleset=check_rcpt, arg1=<x@y.example>, relay=bot [198.18.7.20], "
                     "reject=550 5.7.1 <x@y.example>... Relaying denied"]
EXIM_MESSAGES = [EX_ARRIVAL, EX_SENT, EX_FAIL, EX_UNROUTEABLE, EX_DEFER,
                 "1tHxyz-000ABC-12 Completed"]
SERVICES = ["smtpd", "qmgr", "cleanup", "smtp", "bounce", "postsuper", "pickup", "local"]
PREFIXES = ["Nov 30 04:01:19 mx1 postfix/{}[123]: ", "Nov 30 04:01:19 mx1 sendmail[9]: ",
            "2026-11-30T04:01:19.123+01:00 mx1 postfix/{}[123]: ", "2026-11-30 04:01:19 ",
            "Nov 30 04:01:19 mx1 exim[3301]: "]
REAL_LINES = [
    *(p.format("smtp") + m for p in PREFIXES[:3:2] for m in POSTFIX_MESSAGES),
    *(PREFIXES[1] + m for m in SENDMAIL_MESSAGES),
    *(p + m for p in PREFIXES[3:] for m in EXIM_MESSAGES),
]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Characters that break parsers: separators, digits of other scripts, controls, surrogates
# (undecodable bytes), brackets and quotes, and the replacement character.
NASTY = st.sampled_from(list(", =:;<>[]()\"'\\\n\r\t\x00\x1b\x93\ufffd\udc93²٣0123456789 "))
CHAR = st.one_of(NASTY, st.characters())


@st.composite
def mutated(draw: st.DrawFn, originals: list[str]) -> str:
    """A real line with a few characters inserted, deleted, replaced or a piece repeated."""
    text = draw(st.sampled_from(originals))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "delete", "replace", "repeat", "cut"]))
        if how == "insert":
            text = text[:i] + draw(st.text(CHAR, min_size=1, max_size=5)) + text[i:]
        elif how == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 8)):]
        elif how == "replace":
            text = text[:i] + draw(CHAR) + text[i + 1:]
        elif how == "repeat":
            text = text[:i] + text[i:i + 40] * draw(st.integers(2, 500)) + text[i:]
        else:
            text = text[:i]
    return text


def _is_result(r: object) -> bool:
    return r is None or isinstance(r, tuple)


# --- the parsers never raise -------------------------------------------------------------


@FUZZ
@given(st.sampled_from(SERVICES), st.one_of(st.text(CHAR), mutated(POSTFIX_MESSAGES)))
def test_postfix_parser_never_raises(service: str, message: str) -> None:
    assert _is_result(postfix.parse(service, message))


@FUZZ
@given(st.one_of(st.text(CHAR), mutated(SENDMAIL_MESSAGES)))
def test_sendmail_parser_never_raises(message: str) -> None:
    assert _is_result(sendmail.parse(message))


@FUZZ
@given(st.one_of(st.text(CHAR), mutated(EXIM_MESSAGES)))
def test_exim_parser_never_raises(message: str) -> None:
    assert _is_result(exim.parse(message))


@FUZZ
@given(st.one_of(st.text(CHAR), mutated(REAL_LINES)))
def test_splitter_and_syslog_parser_never_raise(line: str) -> None:
    parts = LineSplitter(REFERENCE).parts(line)
    assert parts is None or len(parts) == 5
    msg = SyslogParser(lambda: REFERENCE).parse("<22>" + line, "192.0.2.1")
    assert msg is None or msg.facility == 2


@FUZZ
@given(st.lists(st.one_of(st.text(CHAR), mutated(REAL_LINES)), min_size=1, max_size=20))
def test_the_feed_takes_any_lines_and_accounts_for_each(lines: list[str]) -> None:
    feed = feed_lines(Recorder(), lines)
    s = feed.stats
    assert s.lines == len(lines)
    # Every line is exactly one of these: read, of no interest, or unreadable.
    assert s.parsed + s.ignored + s.garbled == s.lines
    assert s.parser_errors == 0  # the guard below is a second line of defence only
    assert all(x.isprintable() and len(x) <= EXAMPLE_CHARS + 3 for x in s.examples)


@pytest.mark.parametrize("bad", [
    "size=" + "9" * 5000, "size=²", "size=", "nrcpts=4,\x93msgid=<x>", "nrcpts=-1",
    "nrcpts=" + "7" * 5000,
])
def test_numbers_that_int_would_refuse_make_the_line_garbled(bad: str) -> None:
    line = SM_FROM.replace("size=2206", bad) if bad.startswith("size") else SM_FROM.replace(
        "nrcpts=4", bad)
    assert sendmail.parse(line) is None
    qmgr = "3F2A1B0C9D: from=<a@b.example>, size=" + "9" * 5000 + ", nrcpt=1 (queue active)"
    assert postfix.parse("qmgr", qmgr) is None
    assert exim.parse(EX_ARRIVAL.replace("S=", "S=" + "9" * 5000)) is None


# --- the feed's guard: a parser bug costs one line ---------------------------------------


def test_a_parser_that_raises_costs_its_line_only(caplog: pytest.LogCaptureFixture) -> None:
    """No parser raises any more (above); a future bug must not wedge the feed either.
    The raising parser is a fake: the fault cannot be caused with the real ones."""
    rec = Recorder()
    feed = LogFeed(rec, reference_time=REFERENCE, tz=None)

    def broken(message: str) -> None:
        raise ValueError("invalid literal for int() with base 10: '4,\\x1b[2J'")

    feed._routes["postfix/broken"] = (None, broken)  # type: ignore[assignment]
    lines = [*accepted(0, "AAAAA11111", nrcpt=1),
             at(1, "postfix/broken", "AAAAA11111: \x1b[2J\x07 anything"),
             at(2, "postfix/smtp", bounced("AAAAA11111", "x@example.net"))]
    with caplog.at_level(logging.WARNING, "extrusion.maillog.feed"):
        for line in lines:
            feed.line(line)
        feed.finish()
    s = feed.stats
    assert (s.garbled, s.parser_errors) == (1, 1)
    assert [o.recipient for o in rec.outcomes] == ["x@example.net"]
    assert s.examples == [lines[-2].replace("\x1b", "\\x1b").replace("\x07", "\\x07")]
    (record,) = caplog.records
    assert "\x1b" not in record.getMessage() and "ValueError" in record.getMessage()


def test_a_line_over_the_cap_is_garbled_whatever_it_holds() -> None:
    good = at(0, "postfix/smtp", sent("AAAAA11111", "x@example.org"))
    feed = feed_lines(Recorder(), [good + " " * MAX_LINE, good + "\n"])
    assert (feed.stats.garbled, feed.stats.too_long) == (1, 1)
    assert feed.stats.examples[0].endswith("…") or len(feed.stats.examples[0]) <= EXAMPLE_CHARS + 3


# --- issue 14, item 2, exactly ------------------------------------------------------------


def _sendmail_log(path: Path) -> tuple[str, str]:
    """20 lines of a message, the wedge line, then a whole message after it."""
    stamp = "Nov 30 04:00:{:02d} mta1 sendmail[9]: "
    before = [stamp.format(i) + SM_FROM.replace("a021407", f"a0214{i:02d}") for i in range(20)]
    after_qid = "4AU41J1z021500"
    one = SM_FROM.replace("4AU41J1a021407", after_qid).replace("nrcpts=4", "nrcpts=1")
    after = [f"Nov 30 04:01:00 mta1 sendmail[9]: {one}",
             f"Nov 30 04:01:01 mta1 sendmail[9]: {SM_UNKNOWN.replace('4AU41J1a021407', after_qid)}"]
    wedge = f"Nov 30 04:00:30 mta1 sendmail[9]: {WEDGE}"
    with open(path, "wb") as f:
        for line in [*before, wedge, *after]:
            # The corrupt byte as it was written: not UTF-8.
            f.write(line.encode().replace("\x93".encode(), b"\x93") + b"\n")
    return after_qid, wedge


def test_the_wedge_line_is_garbled_not_an_exception() -> None:
    assert sendmail.parse(WEDGE) is None
    assert sendmail.parse(WEDGE.replace("\x93", "\ufffd")) is None


def test_the_file_feed_reads_past_the_wedge_line_and_checkpoints(
    tmp_path: Path, store_url: str
) -> None:
    log = tmp_path / "mail.log"
    after_qid, _ = _sendmail_log(log)
    cfg = make_config(tmp_path, store_url, maillog={
        "source": "file", "path": str(log), "start_at": "beginning", "format": "sendmail",
        "timezone": "UTC"})
    engine = Engine(cfg, Store(store_url), time.time, own_store=True)
    svc = FileFeedService(cfg, engines=None, reactor=task.Clock(), metrics=Metrics())  # type: ignore[arg-type]
    try:
        assert svc._poll(engine) == 23
        assert svc._poll(engine) == 0  # nothing read twice: the bug re-counted every second
        stats: FeedStats = svc.feed.stats
        assert (stats.lines, stats.garbled) == (23, 1)
        assert stats.examples == [
            "Nov 30 04:00:30 mta1 sendmail[9]: " + WEDGE.replace("\x93", "\ufffd")]
        assert svc.counters.seen["garbled"] == 1
        engine.flush()
        # Read to the end (`reached`); where a restart resumes may stay at a message
        # still open, whose lines are read again then (maillog/recovery.py).
        saved = engine.store.get_checkpoint(svc.follower.name)
        assert saved is not None
        assert (saved.inode, saved.reached) == (os.stat(log).st_ino, os.path.getsize(log))
        # The message after the wedge line was read and its bounce recorded.
        msg = engine.store.message(after_qid, "mta1.test")
        assert msg is not None and msg.sender == "ip:192.0.2.7"
    finally:
        svc.feed.finish()
        svc.follower.close()
        engine.close()


@pytest.mark.parametrize("parallel", [False, True])
def test_replay_of_the_wedge_line_exits_0_and_counts_it(tmp_path: Path, parallel: bool) -> None:
    from extrusion.replay.command import replay

    log = tmp_path / "mail.log"
    _sendmail_log(log)
    cfg = make_config(tmp_path, maillog={"format": "sendmail", "timezone": "UTC"})
    out, err = io.StringIO(), io.StringIO()
    assert replay(cfg, [str(log)], out=out, err=err, parallel=parallel) == 0, err.getvalue()
    assert "1 skipped as unreadable" in out.getvalue()
    assert "nrcpts=4,\ufffdmsgid=" in out.getvalue()


def test_replay_skips_an_over_long_line_without_reading_it_whole(tmp_path: Path) -> None:
    from extrusion.replay.command import replay

    log = tmp_path / "mail.log"
    _sendmail_log(log)
    with open(log, "a", encoding="utf-8") as f:
        f.write("Nov 30 04:02:00 mta1 sendmail[9]: " + "z" * (8 * MAX_LINE) + "\n")
        f.write(f"Nov 30 04:02:01 mta1 sendmail[9]: {SM_FROM}\n")
    cfg = make_config(tmp_path, maillog={"format": "sendmail", "timezone": "UTC"})
    out, err = io.StringIO(), io.StringIO()
    assert replay(cfg, [str(log)], out=out, err=err, parallel=False) == 0, err.getvalue()
    assert "2 skipped as unreadable" in out.getvalue()
    assert "25 lines" in out.getvalue().replace(",", "")
    # The reader never held the line whole: at most the cap and its newline.
    errors: list[str] = []
    longest = max(len(line) for line in read_lines([str(log)], errors))
    assert MAX_LINE < longest <= MAX_LINE + 2 and not errors


def test_syslog_wedge_datagrams_are_counted_not_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = LogFeed(Recorder(), fmt="sendmail", reference_time=REFERENCE, tz=None)
    proto = SyslogProtocol(feed, lambda: REFERENCE)
    datagram = ("<22>Nov 30 04:00:30 mta1 sendmail[9]: " + WEDGE).encode().replace(
        "\x93".encode(), b"\x93")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            proto.datagramReceived(datagram, ("192.0.2.1", 514))
    assert (feed.stats.lines, feed.stats.garbled, proto.failed) == (3, 3, 0)
    assert not caplog.records

    class Broken:
        """A fault the real feed cannot be made to raise: the receiver's own guard."""

        def entry(self, *args: object) -> None:
            raise RuntimeError("feed bug \x1b[31m")

        def line(self, text: str) -> None:
            raise RuntimeError("feed bug")

    proto = SyslogProtocol(Broken(), lambda: REFERENCE)
    with caplog.at_level(logging.WARNING, "extrusion.maillog.syslog"):
        for _ in range(FAILURES_LOGGED + 20):
            proto.datagramReceived(datagram, ("192.0.2.1", 514))
    assert proto.failed == FAILURES_LOGGED + 20
    assert len(caplog.records) == FAILURES_LOGGED  # one line each, rate-limited
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)
    assert "\x1b" not in caplog.records[0].getMessage()
