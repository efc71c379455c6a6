"""Syslog datagrams (RFC 3164 and 5424) into the feed: parser, then real UDP and unix sockets."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor as _reactor

from extrusion.maillog.syslog import (
    EndpointError,
    SyslogParser,
    SyslogProtocol,
    listen_syslog,
)

from .maillog_helpers import REFERENCE, Recorder

reactor: Any = _reactor
NOW = REFERENCE + 3600.0


def ts(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()  # type: ignore[misc]


@pytest.fixture
def parser() -> SyslogParser:
    return SyslogParser(clock=lambda: NOW, tz=dt.UTC)


def test_rfc3164_with_host(parser: SyslogParser) -> None:
    m = parser.parse("<22>Nov 30 04:01:19 smtp1 postfix/smtpd[4242]: "
                     "3F2A1B0C9D: client=x[192.0.2.7]", "10.0.0.9")
    assert m is not None
    assert (m.time, m.host, m.program, m.pid, m.message) == (
        ts(2026, 11, 30, 4, 1, 19), "smtp1", "postfix/smtpd", "4242",
        "3F2A1B0C9D: client=x[192.0.2.7]")
    assert (m.facility, m.severity) == (2, 6)  # mail.info


def test_rfc3164_local_sender_omits_the_host(parser: SyslogParser) -> None:
    m = parser.parse("<22>Nov  2 10:47:15 postfix/qmgr[77]: 3F2A1B0C9D: removed\n", "")
    assert m is not None
    assert (m.host, m.program, m.pid, m.message) == (
        "", "postfix/qmgr", "77", "3F2A1B0C9D: removed")


def test_rfc3164_without_a_stamp_takes_the_arrival_time(parser: SyslogParser) -> None:
    m = parser.parse("<22>postfix/qmgr[77]: 3F2A1B0C9D: removed", "192.0.2.53")
    assert m is not None and (m.time, m.host, m.program) == (NOW, "192.0.2.53", "postfix/qmgr")


def test_rfc3164_with_rfc3339_stamp(parser: SyslogParser) -> None:
    m = parser.parse("<22>2026-11-30T05:01:19.5+01:00 smtp1 postfix/smtp[9]: x: removed")
    assert m is not None and m.time == ts(2026, 11, 30, 4, 1, 19) + 0.5


def test_rfc5424_with_structured_data_and_bom(parser: SyslogParser) -> None:
    m = parser.parse('<22>1 2026-11-30T04:01:19.123456Z smtp1.isp.example postfix/smtp 4242 - '
                     '[origin ip="192.0.2.1"][meta note="a \\] b"] \ufeff3F2A1B0C9D: removed')
    assert m is not None
    assert (m.host, m.program, m.pid, m.message) == (
        "smtp1.isp.example", "postfix/smtp", "4242", "3F2A1B0C9D: removed")
    assert m.time == pytest.approx(ts(2026, 11, 30, 4, 1, 19) + 0.123456)


def test_rfc5424_nil_fields(parser: SyslogParser) -> None:
    m = parser.parse("<22>1 - - postfix/qmgr - - - 3F2A1B0C9D: removed", "10.0.0.9")
    assert m is not None and (m.time, m.host, m.pid, m.message) == (
        NOW, "10.0.0.9", "", "3F2A1B0C9D: removed")


@pytest.mark.parametrize(
    "text",
    ["", "no priority at all", "<>Nov 30 04:01:19 h p: x", "<999>Nov 30 04:01:19 h p: x",
     "<22>Nov 31 04:01:19 h p: impossible date", "<22>1 2026-13-45T99:99:99Z h a 1 - - x"],
)
def test_not_syslog(parser: SyslogParser, text: str) -> None:
    assert parser.parse(text) is None


def test_protocol_hands_garbage_to_the_feed_as_a_plain_line() -> None:
    rec = Recorder()
    from extrusion.maillog.feed import LogFeed

    feed = LogFeed(rec, reference_time=REFERENCE)
    proto = SyslogProtocol(feed, clock=lambda: NOW)
    proto.datagramReceived(b"\xff\xfe junk", ("192.0.2.1", 514))
    proto.datagramReceived(b"Nov 30 04:01:19 smtp1 postfix/qmgr[1]: 3F2A1B0C9D: removed",
                           ("192.0.2.1", 514))
    assert (proto.datagrams, proto.not_syslog) == (2, 2)
    assert (feed.stats.garbled, feed.stats.parsed) == (1, 1)


# --- real sockets ----------------------------------------------------------------------------

MESSAGE = [
    "3F2A1B0C9D: client=dsl-7.isp.example[2001:db8::7], sasl_method=PLAIN, sasl_username=zoë",
    "3F2A1B0C9D: from=<zoë@customer.example>, size=2206, nrcpt=1 (queue active)",
    "3F2A1B0C9D: to=<bob@example.org>, relay=mx[198.51.100.7]:25, delay=1, delays=0/0/0/1, "
    "dsn=5.1.1, status=bounced (host mx said: 550 5.1.1 unknown user)",
    "3F2A1B0C9D: removed",
]
PROGRAMS = ["postfix/submission/smtpd", "postfix/qmgr", "postfix/smtp", "postfix/qmgr"]


def datagrams() -> list[bytes]:
    out = []
    for i, (prog, text) in enumerate(zip(PROGRAMS, MESSAGE, strict=True)):
        if i % 2:
            out.append(f"<22>1 2026-11-30T04:01:{10 + i:02d}Z smtp1 {prog} 42 - - {text}".encode())
        else:
            out.append(f"<22>Nov 30 04:01:{10 + i:02d} smtp1 {prog}[42]: {text}".encode())
    return out


def run_until(cond: Any, seconds: float = 5.0) -> None:
    deadline = int(seconds / 0.01)
    for _ in range(deadline):
        if cond():
            return
        reactor.iterate(0.01)
    raise AssertionError("timed out waiting for datagrams")


@pytest.fixture
def feed_and_rec() -> Iterator[tuple[Any, Recorder]]:
    from extrusion.maillog.feed import LogFeed

    rec = Recorder()
    yield LogFeed(rec, reference_time=REFERENCE, tz=dt.UTC), rec


def check_message(rec: Recorder) -> None:
    assert [s.sender for s in rec.submissions] == ["sasl:zoë"]
    assert [(o.recipient, o.status.value, o.sender, o.time) for o in rec.outcomes] == [
        ("bob@example.org", "bounced", "sasl:zoë", ts(2026, 11, 30, 4, 1, 12))]


def test_udp_endpoint(feed_and_rec: tuple[Any, Recorder]) -> None:
    feed, rec = feed_and_rec
    proto = SyslogProtocol(feed, clock=lambda: NOW, tz=dt.UTC)
    port = listen_syslog(reactor, "udp:0:interface=127.0.0.1", proto)
    try:
        addr = ("127.0.0.1", port.getHost().port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams():
                s.sendto(d, addr)
        run_until(lambda: proto.datagrams == len(MESSAGE))
    finally:
        port.stopListening()
    check_message(rec)


def test_unix_datagram_endpoint_replaces_a_stale_socket(
    tmp_path: Path, feed_and_rec: tuple[Any, Recorder]
) -> None:
    feed, rec = feed_and_rec
    path = tmp_path / "syslog.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()  # leaves the socket file behind, as a crashed daemon would
    proto = SyslogProtocol(feed, clock=lambda: NOW, tz=dt.UTC)
    port = listen_syslog(reactor, f"unix:{path}", proto)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for d in datagrams():
                s.sendto(d, str(path))
        run_until(lambda: proto.datagrams == len(MESSAGE))
    finally:
        port.stopListening()
    check_message(rec)


def test_unix_endpoint_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    with pytest.raises(EndpointError, match="not a socket"):
        listen_syslog(reactor, f"unix:{path}", SyslogProtocol(Recorder()))  # type: ignore[arg-type]
    assert path.read_text() == "precious"


@pytest.mark.parametrize("endpoint", ["tcp:514", "udp:x", "udp:514:iface=1.2.3.4", "unix:"])
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(EndpointError):
        listen_syslog(reactor, endpoint, SyslogProtocol(Recorder()))  # type: ignore[arg-type]
