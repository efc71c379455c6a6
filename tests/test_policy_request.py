"""The policy request parser: every split of the byte stream, every bound, every kind of junk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extrusion.policyd.request import (
    BadInput,
    Garbage,
    LineTooLong,
    NotAPolicyRequest,
    PolicyRequest,
    RequestParser,
    TooManyAttributes,
)

# A request as Postfix 3.7 sends it at RCPT (attribute order as in SMTPD_POLICY_README).
RCPT = (
    b"request=smtpd_access_policy\n"
    b"protocol_state=RCPT\n"
    b"protocol_name=ESMTP\n"
    b"helo_name=pc17.customer.example\n"
    b"queue_id=\n"
    b"sender=alice@customer.example\n"
    b"recipient=bob@remote.example\n"
    b"recipient_count=0\n"
    b"client_address=192.0.2.17\n"
    b"client_name=unknown\n"
    b"reverse_client_name=unknown\n"
    b"instance=1b2c.6571b0a3.9c1f2.0\n"
    b"sasl_method=plain\n"
    b"sasl_username=alice@customer.example\n"
    b"sasl_sender=\n"
    b"size=0\n"
    b"ccert_subject=\n"
    b"encryption_protocol=TLSv1.3\n"
    b"etrn_domain=\n"
    b"stress=\n"
    b"policy_context=\n"
    b"server_address=127.0.0.1\n"
    b"server_port=25\n"
    b"compatibility_level=3.6\n"
    b"mail_version=3.7.11\n"
    b"\n"
)

EOM = (
    b"request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nqueue_id=4XyZ1k2ABCz\n"
    b"client_address=192.0.2.17\nrecipient_count=3\nsize=2206\nrecipient=\n\n"
)


def parser(max_line: int = 2048, max_attributes: int = 100) -> RequestParser:
    return RequestParser(max_line, max_attributes)


def test_a_full_request_in_one_piece() -> None:
    [req] = parser().feed(RCPT)
    assert req.protocol_state == "RCPT"
    assert req.sasl_username == "alice@customer.example"
    assert req.client_address == "192.0.2.17"
    assert req.helo_name == "pc17.customer.example"
    assert req.sender == "alice@customer.example"
    assert req.recipient == "bob@remote.example"
    assert req.client_name == ""  # Postfix's "unknown" means no name
    assert req.queue_id == ""
    assert req.recipient_count == 0


def test_end_of_message_carries_count_and_size() -> None:
    [req] = parser().feed(EOM)
    assert (req.protocol_state, req.recipient_count, req.size) == ("END-OF-MESSAGE", 3, 2206)
    assert req.queue_id == "4XyZ1k2ABCz"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000])
def test_any_split_of_the_stream_gives_the_same_requests(chunk: int) -> None:
    stream = RCPT + EOM + RCPT
    p = parser()
    got: list[PolicyRequest] = []
    for i in range(0, len(stream), chunk):
        got += p.feed(stream[i : i + chunk])
    assert [r.protocol_state for r in got] == ["RCPT", "END-OF-MESSAGE", "RCPT"]
    assert got[0] == got[2]
    assert not p.pending


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=60))
def test_random_splits_never_change_the_result(cuts: list[int]) -> None:
    stream = RCPT + EOM
    p = parser()
    got: list[PolicyRequest] = []
    pos = 0
    for n in cuts:
        got += p.feed(stream[pos : pos + n])
        pos += n
    got += p.feed(stream[pos:])
    assert [r.attrs for r in got] == [r.attrs for r in parser().feed(stream)]


@pytest.mark.parametrize(("chunks", "count", "end"), [
    ([RCPT, EOM, RCPT], 3, ""),  # one request per chunk, as Postfix writes them
    ([RCPT + EOM, RCPT], 3, ""),  # two in one chunk
    ([RCPT[:5], RCPT[5:] + EOM, RCPT], 3, ""),  # a chunk ends a request begun before it
    ([RCPT.replace(b"\n", b"\r\n"), EOM], 2, ""),  # CRLF: the line-by-line path
    ([RCPT, EOM.replace(b"size=2206\n", b"size\n")], 1, "garbage"),  # a line without "="
    ([RCPT, EOM[:-1]], 1, "pending"),  # the second not complete yet
])
def test_whole_chunks_give_what_the_line_by_line_parse_gives(
        chunks: list[bytes], count: int, end: str) -> None:
    def parse(pieces: list[bytes]) -> tuple[list[PolicyRequest], str]:
        p, got = parser(), []
        try:
            for piece in pieces:
                got += p.feed(piece)
        except BadInput as exc:
            return got + exc.completed, exc.kind
        return got, "pending" if p.pending else ""

    stream = b"".join(chunks)
    got, got_end = parse(chunks)
    one_byte, one_byte_end = parse([stream[i:i + 1] for i in range(len(stream))])
    assert ([r.attrs for r in got], got_end) == ([r.attrs for r in one_byte], one_byte_end)
    assert (len(got), got_end) == (count, end)


def test_pending_while_a_request_is_incomplete() -> None:
    p = parser()
    assert p.feed(b"request=smtpd_access_policy\nprotocol_st") == []
    assert p.pending
    assert p.feed(b"ate=RCPT\n") == []
    assert p.pending
    [req] = p.feed(b"\n")
    assert req.protocol_state == "RCPT"
    assert not p.pending


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"recipient_count=", 0),  # empty value
        (b"recipient_count=0", 0),  # "name=0" for an unavailable number
        (b"recipient_count=12", 12),
        (b"recipient_count=-4", 0),
        (b"recipient_count=lots", 0),
    ],
)
def test_numeric_attributes_absent_empty_or_zero(line: bytes, value: int) -> None:
    [req] = parser().feed(b"request=smtpd_access_policy\n" + line + b"\n\n")
    assert req.recipient_count == value


def test_missing_attributes_read_as_empty() -> None:
    [req] = parser().feed(b"request=smtpd_access_policy\n\n")
    assert (req.sasl_username, req.client_address, req.protocol_state, req.size) == ("", "", "", 0)


def test_unknown_attributes_are_kept_and_ignored() -> None:
    [req] = parser().feed(
        b"request=smtpd_access_policy\nfuture_attribute=x=y\nprotocol_state=rcpt\n\n"
    )
    assert req.get("future_attribute") == "x=y"  # only the first "=" separates
    assert req.protocol_state == "RCPT"


def test_a_repeated_attribute_keeps_the_last_value() -> None:
    [req] = parser().feed(b"request=smtpd_access_policy\nsender=a@x\nsender=b@x\n\n")
    assert req.sender == "b@x"


def test_crlf_line_ends_are_tolerated() -> None:
    [req] = parser().feed(b"request=smtpd_access_policy\r\nprotocol_state=RCPT\r\n\r\n")
    assert req.protocol_state == "RCPT"


def test_non_utf8_values_are_escaped_not_refused() -> None:
    [req] = parser().feed(b"request=smtpd_access_policy\nhelo_name=caf\xe9\n\n")
    assert req.helo_name == "caf\\xe9"


def test_utf8_values_pass() -> None:
    [req] = parser().feed("request=smtpd_access_policy\nsender=jürgen@bü.example\n\n".encode())
    assert req.sender == "jürgen@bü.example"


# --- bad input: each kind raises its own error ------------------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"request=smtpd_access_policy\nhelo_name=" + b"x" * 3000 + b"\n\n", LineTooLong),
        (b"request=smtpd_access_policy\nhelo_name=" + b"x" * 3000, LineTooLong),  # no newline
        (b"request=smtpd_access_policy\n" + b"a=b\n" * 100 + b"\n", TooManyAttributes),
        (b"protocol_state=RCPT\nsender=a@b\n\n", NotAPolicyRequest),
        (b"request=junk\n\n", NotAPolicyRequest),
        (b"\n", NotAPolicyRequest),  # an empty request
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Garbage),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", Garbage),  # a TLS hello
        (b"request=smtpd_access_policy\nsender=a\x00b\n\n", Garbage),
        (b"request=smtpd_access_policy\n\xff\xfe=1\n\n", Garbage),
        (b"request=smtpd_access_policy\n=value\n\n", Garbage),
        (b"EHLO example.com\n", Garbage),
    ],
)
def test_bad_input_raises_its_kind(data: bytes, error: type[BadInput]) -> None:
    with pytest.raises(error) as info:
        parser().feed(data)
    assert info.value.kind == error.kind
    assert str(info.value)  # a detail for the log line


def test_a_line_at_the_limit_is_fine_one_byte_more_is_not() -> None:
    head = b"helo_name="
    ok = head + b"x" * (100 - len(head))
    [req] = parser(max_line=100).feed(b"request=smtpd_access_policy\n" + ok + b"\n\n")
    assert len(req.helo_name) == 100 - len(head)
    with pytest.raises(LineTooLong):
        parser(max_line=100).feed(b"request=smtpd_access_policy\n" + ok + b"x\n\n")


def test_attribute_limit_counts_lines_of_one_request_only() -> None:
    one = b"request=smtpd_access_policy\na=1\nb=2\n\n"
    p = parser(max_attributes=3)
    assert len(p.feed(one * 5)) == 5
    with pytest.raises(TooManyAttributes):
        p.feed(b"request=smtpd_access_policy\na=1\nb=2\nc=3\n\n")


def test_requests_before_the_junk_are_handed_over() -> None:
    with pytest.raises(Garbage) as info:
        parser().feed(RCPT + EOM + b"\x00junk\n")
    # NUL is checked on the whole chunk first: nothing is parsed from a chunk with NUL.
    assert info.value.completed == []
    with pytest.raises(NotAPolicyRequest) as info2:
        parser().feed(RCPT + EOM + b"request=other\n\n")
    assert [r.protocol_state for r in info2.value.completed] == ["RCPT", "END-OF-MESSAGE"]


# --- the fast path (whole requests) and the line-by-line path agree --------------------


def line_by_line(max_line: int, max_attributes: int) -> RequestParser:
    """The parser with its fast path switched off."""
    return RequestParser(max_line, max_attributes, fast=False)


def outcome(parser: RequestParser, chunks: list[bytes]) -> tuple[str, list[dict[str, str]]]:
    got: list[PolicyRequest] = []
    try:
        for chunk in chunks:
            got += parser.feed(chunk)
    except BadInput as exc:
        return exc.kind, [dict(r.attrs) for r in [*got, *exc.completed]]
    return "ok", [dict(r.attrs) for r in got]


# Names and values the fast path must hand to the line-by-line one: control characters,
# DEL, a tab, bytes that are not UTF-8 ("\udcff" is the byte 0xff under surrogateescape).
_names = st.sampled_from(["request", "protocol_state", "sender", "size", "x", "a b", "", "é",
                          "del\x7f", "tab\tname", "bad\udcff", "ctl\x1f"])
_values = st.sampled_from(
    ["smtpd_access_policy", "RCPT", "a@b", "", "0", "x=y", "caf\xe9", "\r", "v" * 90,
     "raw\udcfe", "vt\x0b", "tab\tvalue"]
)
_line = st.one_of(
    st.tuples(_names, _values).map(lambda nv: f"{nv[0]}={nv[1]}"),
    st.sampled_from(["", "junk", "request=smtpd_access_policy"]),
)


@given(
    st.lists(st.lists(_line, max_size=8), min_size=1, max_size=4),
    st.integers(min_value=1, max_value=64),
)
def test_fast_and_line_by_line_paths_agree(requests: list[list[str]], cut: int) -> None:
    data = b"".join(
        "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape") + b"\n"
        for lines in requests
    )
    whole = [data]
    pieces = [data[i : i + cut] for i in range(0, len(data), cut)]
    expected = outcome(line_by_line(80, 6), whole)
    assert outcome(RequestParser(80, 6), whole) == expected
    assert outcome(RequestParser(80, 6), pieces) == outcome(line_by_line(80, 6), pieces)
