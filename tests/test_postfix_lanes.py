"""Postfix's lanes (`postfixlanes.LaneJoiner`) and the batch feed (`LogFeed.lines`) read
every line as the parser and `line()` do: the same events, in the same order, and every
line counted the same (parsed, ignored, garbled), for ordinary, odd and damaged lines.

The reference is a real `LogFeed` with its lanes turned off (every line through
`postfix.parse()` and `Joiner.add()`), fed one line at a time.
"""

from __future__ import annotations

import json
import pickle
import random
import re
from pathlib import Path
from typing import Any

import pytest

from extrusion.maillog import postfix
from extrusion.maillog.feed import LogFeed
from extrusion.maillog.join import JoinSettings
from extrusion.maillog.records import Delivery
from extrusion.replay import worker

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
        feed.lanes = False
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


def delivery_lines(i: int) -> list[str]:
    """A message of 1 to 3 recipients whose attempts take the delivery lane's ways and the
    records': sent or bounced at once, deferred then sent, after the message waited or
    not, stamped before the line before (as syslog interleaves processes), of a client the
    log never named, a bounce's, handed to a content filter on loopback, expired."""
    qid, s = f"C0FFEE{i:04d}", 2 * i + 600
    nrcpt = 1 + i % 3
    lines = [] if i % 5 == 0 else [at(s, "postfix/smtpd", f"{qid}: client=h[192.0.2.{i}]")]
    if i % 8 == 1:
        lines.append(at(s, "postfix/bounce", f"C0FFEE{i - 1:04d}: sender non-delivery "
                                             f"notification: {qid}"))
    mid = [f"<{i}@x>", f" <{i}@x> ", "", f"{i}@x", "<>"][i % 5]
    if i % 13 == 6:  # refused after its message-id: no more lines, until it ages out
        return [*lines, at(s + 3, "postfix/cleanup", f"{qid}: message-id={mid}")]
    lines.append(at(s + i % 2, "postfix/cleanup", f"{qid}: message-id={mid}"))
    if i % 10 == 6:  # a spam filter's verdict by Message-ID, waiting for the envelope
        lines.append(at(s + 1, "spamd", f"spamd: result: Y 12 - X scantime=0.3,mid=<{i}@x>,"
                                        "autolearn=no"))
    if i % 11 == 5:  # an envelope without its count (damaged), then the whole one
        lines.append(at(s, "postfix/qmgr", f"{qid}: from=<z@b>, size=1, nrcpt=0"))
    if i % 20 != 6:  # else removed with no envelope logged
        lines.append(at(s + i % 3, "postfix/qmgr", f"{qid}: from=<a{i}@b>, size=9, "
                                                   f"nrcpt={nrcpt}"))
    for k in range(nrcpt):
        status = ["sent (250 2.0.0 ok)", "bounced (550 5.1.1 no)", "deferred (busy)"][
            (i + k) % 3]
        relay = "mx[198.51.100.7]:25"
        if i % 7 == 3:  # to a content filter, whose queue id is logged before or after
            relay, status = "f[127.0.0.1]:10025", f"sent (250 Ok: queued as C0FFEF{i:04d})"
            lines += handed_on(i, s) if k == 0 and i % 2 else []
        dsn = "5.1.1" if status.startswith("b") else "4.0.0" if status[0] == "d" else "2.0.0"
        line = f"{qid}: to=<r{k}@x>, relay={relay}, delay=1, dsn={dsn}, status={status}"
        lines.append(at(s + (k * 4 + i) % 9 - 3, "postfix/smtp", line))
        if status.startswith("deferred") and i % 12 != 2:
            lines.append(at(s + 7, "postfix/smtp", line.replace("status=deferred (busy)",
                                                                  "status=sent (250 ok)")))
    if i % 7 == 3 and not i % 2:
        lines += handed_on(i, s + 1)
    if i % 6 == 2:
        lines.append(at(s + 8, "postfix/qmgr", f"{qid}: from=<a{i}@b>, status=expired, "
                                               "returned to sender"))
    return [*lines, at(s + 8, "postfix/qmgr", f"{qid}: removed")] if i % 4 else lines


def interleaved(messages: list[list[str]], among: int = 3) -> list[str]:
    """The messages' lines in turn, `among` messages at a time (as a busy log has them)."""
    out = []
    for i in range(0, len(messages), among):
        group = messages[i:i + among]
        for k in range(max(map(len, group))):
            out += [m[k] for m in group if k < len(m)]
    return out


def handed_on(i: int, s: int) -> list[str]:
    """The content filter's copy of message `i`, sent on."""
    qid = f"C0FFEF{i:04d}"
    return [at(s, "postfix/smtpd", f"{qid}: client=localhost[127.0.0.1]"),
            at(s, "postfix/qmgr", f"{qid}: from=<a{i}@b>, size=9, nrcpt=1"),
            at(s + 1, "postfix/smtp", f"{qid}: to=<r0@x>, relay=mx[198.51.100.7]:25, "
                                      "dsn=2.0.0, status=sent (250 ok)")]


class CountingEncoder:
    """The reader's encoder, counting the outcomes the delivery lane encodes itself. It
    wraps rather than patches: the encoder may be compiled (mypyc), whose methods are
    read-only."""

    def __init__(self) -> None:
        self.enc = worker._Encoder(())
        self.fast = 0

    def outcome_fields(self, *fields: Any) -> None:
        self.fast += 1
        self.enc.outcome_fields(*fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.enc, name)


def encoded(lines: list[str], *, lanes: bool, settings: JoinSettings,
            reread: float | None) -> tuple[bytes, str, int]:
    """The replay's reader stream of these lines (pickled, as it goes down the pipe), its
    counters, and how many outcomes the delivery lane encoded itself; `reread`: seconds
    after the first line read again after a restart (`Joiner.reread_until`)."""
    counting = CountingEncoder()
    enc = counting.enc
    feed = LogFeed(counting, settings=settings, reference_time=REFERENCE, guard=False)
    enc.clock = feed.joiner
    if not lanes:
        feed.lanes = False
    if reread is not None:
        feed.lines(lines[:1])
        feed.joiner.reread_until = feed.joiner.now + reread
        lines = lines[1:]
    feed.lines(lines)
    feed.finish()
    return pickle.dumps(enc.items, worker.PICKLE_PROTOCOL), repr(feed.stats), counting.fast


@pytest.mark.parametrize("seed", [None, 1, 2, 3, 4, 5])
@pytest.mark.parametrize(("settings", "reread"), [
    (JoinSettings(wait_seconds=5.0), None),
    (JoinSettings(wait_seconds=2.0, ttl_seconds=6.0, max_queue_ids=4), None),  # aged, evicted
    (JoinSettings(submissions=False), None),
    (JoinSettings(wait_seconds=5.0), 60.0),
])
def test_the_delivery_lane_encodes_every_outcome_as_the_records_way(
        seed: int | None, settings: JoinSettings, reread: float | None) -> None:
    lines = interleaved([delivery_lines(i) for i in range(60)]) + sample()
    if seed is not None:
        lines = damaged(lines, seed)
    stream, stats, fast = encoded(lines, lanes=True, settings=settings, reread=reread)
    assert (stream, stats) == encoded(lines, lanes=False, settings=settings,
                                      reread=reread)[:2]
    assert fast > 15  # the lane's own way, not only the records'


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
