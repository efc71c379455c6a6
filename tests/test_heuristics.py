"""The per-message heuristics: bounces, rejection daemons, lists, spam verdicts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extrusion.scoring.events import Headers
from extrusion.scoring.heuristics import (
    LIST_IDENTITY_LIMIT,
    is_auto_reply,
    is_list_like,
    is_null_sender,
    is_robot_localpart,
    judged_by_outcomes,
    list_identity,
    mentions_own_network,
)
from extrusion.scoring.verdicts import spam_verdict

NONE = Headers()


# --- null sender -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("envelope_from", "expected"),
    [
        ("", True),
        ("<>", True),
        (" <> ", True),
        ("< >", True),
        ("MAILER-DAEMON@mx.example.net", False),  # a bounce *without* <> is not a null sender
        ("<bob@customer.example>", False),
        ("bob@customer.example", False),
    ],
)
def test_is_null_sender(envelope_from: str, expected: bool) -> None:
    assert is_null_sender(envelope_from) is expected


@pytest.mark.parametrize("envelope_from", [
    "", "<>", " <> ", "bob@customer.example", "<bob@customer.example>", "noreply@shop.example",
    "NoReply+tag@shop.example", "prvs=1234abcd=mailer-daemon@mx.example", "postmaster",
    "team-bounces@lists.example", "bounces@lists.example",
])
def test_judged_by_outcomes_is_a_bounce_or_a_robot(envelope_from: str) -> None:
    # One cached question at every recipient for the two the submission judge asked.
    assert judged_by_outcomes(envelope_from) is (
        is_null_sender(envelope_from) or is_robot_localpart(envelope_from))
    assert judged_by_outcomes(envelope_from) is not (
        envelope_from in ("bob@customer.example", "<bob@customer.example>",
                          "team-bounces@lists.example"))


# --- rejection daemons -------------------------------------------------------------------------

AUTO_REPLIES = [
    ("auto-replied", "bob@customer.example", Headers(auto_submitted="auto-replied")),
    ("auto-generated-with-comment", "bob@customer.example",
     Headers(auto_submitted="Auto-Generated (vacation)")),
    ("auto-notified-params", "bob@customer.example",
     Headers(auto_submitted="auto-notified; owner-email=bob@customer.example")),
    ("precedence-auto-reply", "bob@customer.example", Headers(precedence="auto_reply")),
    ("vacation-precedence-bulk", "bob@customer.example", Headers(precedence="bulk")),
    ("precedence-junk", "bob@customer.example", Headers(precedence="Junk")),
    ("postmaster", "postmaster@customer.example", NONE),
    ("mailer-daemon", "MAILER-DAEMON@mx.customer.example", NONE),
    ("noreply", "<noreply@shop.customer.example>", NONE),
    ("no-reply", "no-reply@shop.customer.example", NONE),
    ("do-not-reply", "do-not-reply@shop.customer.example", NONE),
    ("bounce", "bounce@customer.example", NONE),
    ("autoreply", "autoreply@customer.example", NONE),
    ("vacation", "vacation@customer.example", NONE),
    ("batv-tagged-postmaster", "prvs=1234abcdef=postmaster@customer.example", NONE),
    ("plus-tagged-noreply", "noreply+orders@shop.customer.example", NONE),
    # a list header does not excuse an explicit Auto-Submitted
    ("auto-submitted-despite-list-id", "owner@lists.example.org",
     Headers(auto_submitted="auto-replied", list_id="<team.lists.example.org>")),
]


@pytest.mark.parametrize(
    ("envelope_from", "headers"),
    [pytest.param(frm, hdr, id=i) for i, frm, hdr in AUTO_REPLIES],
)
def test_auto_replies(envelope_from: str, headers: Headers) -> None:
    assert is_auto_reply(envelope_from, headers, 1) is True


NOT_AUTO_REPLIES = [
    ("plain-mail", "bob@customer.example", NONE, 1),
    ("auto-submitted-no", "bob@customer.example", Headers(auto_submitted="no"), 1),
    ("auto-submitted-no-comment", "bob@customer.example",
     Headers(auto_submitted="No (sent by a human)"), 1),
    ("precedence-list", "bob@customer.example", Headers(precedence="list"), 1),
    ("precedence-first-class", "bob@customer.example", Headers(precedence="first-class"), 1),
    # Mailman with personalisation sends one recipient per message, with list headers
    ("mailman-verp", "team-bounces+jo=example.net@lists.example.org",
     Headers(precedence="list", list_id="Team <team.lists.example.org>"), 1),
    ("bulk-with-list-unsubscribe", "bounces@esp.example",
     Headers(precedence="bulk", list_unsubscribe="<mailto:unsub@esp.example>"), 1),
    ("list-bounces-localpart", "team-bounces@lists.example.org", NONE, 1),
    ("proper-bounce-with-null-sender", "<>", Headers(auto_submitted="auto-replied"), 1),
    ("two-recipients", "vacation@customer.example", Headers(auto_submitted="auto-replied"), 2),
    ("no-recipients", "vacation@customer.example", Headers(auto_submitted="auto-replied"), 0),
    ("postmaster-inside-a-word", "postmasters-club@customer.example", NONE, 1),
]


@pytest.mark.parametrize(
    ("envelope_from", "headers", "count"),
    [pytest.param(frm, hdr, n, id=i) for i, frm, hdr, n in NOT_AUTO_REPLIES],
)
def test_not_auto_replies(envelope_from: str, headers: Headers, count: int) -> None:
    assert is_auto_reply(envelope_from, headers, count) is False


@pytest.mark.parametrize(
    "envelope_from",
    sorted({frm for _i, frm, _h in AUTO_REPLIES} | {frm for _i, frm, _h, _n in NOT_AUTO_REPLIES}
           | {"", "<>", "MAILER-DAEMON@host.example", "bob"}),
)
def test_auto_reply_without_headers_is_the_return_paths_answer(envelope_from: str) -> None:
    # No headers (a message from the log) are answered by a shorter way; headers that
    # hold only blanks take the long one, and both must say the same.
    blank = Headers(auto_submitted=" ", precedence=" ", list_id=" ", list_unsubscribe=" ")
    for count in (0, 1, 2):
        assert is_auto_reply(envelope_from, NONE, count) is is_auto_reply(
            envelope_from, blank, count)


def test_auto_reply_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="recipient_count"):
        is_auto_reply("bob@customer.example", NONE, -1)


# --- mailing lists --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipients", "failed", "expected"),
    [
        (31 + 2, 2, True),  # the talk's example: 31 more valid destinations, 2 failed
        (100, 10, True),  # 10 % fail: a list
        (100, 20, True),  # exactly the share
        (100, 21, False),
        (10, 0, True),  # exactly the minimum
        (9, 0, False),  # too few to be a list
        (50, 50, False),  # a spam run to invented addresses
        (57, 0, True),
    ],
)
def test_is_list_like(recipients: int, failed: int, expected: bool) -> None:
    assert is_list_like(recipients, failed, min_recipients=10, max_failure_share=0.2) is expected


def test_is_list_like_boundary_share_is_exact() -> None:
    # 57 / 100 == 0.57 must count as "at most 0.57" despite binary floats
    assert is_list_like(100, 57, 10, 0.57) is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 0, 10, 0.2), "recipient_count"),
        ((10, -1, 10, 0.2), "failed_count"),
        ((10, 11, 10, 0.2), "more than recipient_count"),
        ((10, 0, 0, 0.2), "min_recipients"),
        ((10, 0, 10, 1.5), "max_failure_share"),
        ((10, 0, 10, -0.1), "max_failure_share"),
        ((10, 0, 10, float("nan")), "max_failure_share"),
    ],
)
def test_is_list_like_rejects_bad_input(args: tuple[int, int, int, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        is_list_like(*args)


LIST_IDS = [
    ("list-id-bracketed", "x@y.example", "Team talk <team.lists.example.org>",
     "team.lists.example.org"),
    ("list-id-bare", "x@y.example", "team.lists.example.org", "team.lists.example.org"),
    ("list-id-upper", "x@y.example", "<Team.Lists.Example.ORG>", "team.lists.example.org"),
    ("mailman-verp", "team-bounces+jo=example.net@lists.example.org", "",
     "team-bounces@lists.example.org"),
    ("ezmlm-verp", "team-return-1234-jo=example.net@lists.example.org", "",
     "team-return@lists.example.org"),
    ("bounce-numbers", "bounce-123-456@news.shop.example", "", "bounce@news.shop.example"),
    ("batv", "prvs=1234abcdef=newsletter@shop.example", "", "newsletter@shop.example"),
    ("batv-and-plus", "<PRVS=0123456789=News+May@Shop.Example>", "", "news@shop.example"),
    ("mandrill", "bounce-md_31050260.5e2b9a1e.v1-abc123@mandrillapp.com", "",
     "bounce@mandrillapp.com"),
    ("majordomo-owner", "owner-team-jo=example.net@lists.example.org", "",
     "owner-team@lists.example.org"),
    ("verp-without-dash", "bounce=jo=example.net@news.shop.example", "",
     "bounce@news.shop.example"),
    ("opaque-token", "0100018b2f3e4a5c-1a2b3c4d-5e6f-000000@amazonses.com", "",
     "*@amazonses.com"),
    ("a-list-named-with-a-digit", "team2-bounces@lists.example.org", "",
     "team2-bounces@lists.example.org"),
    ("null-sender", "<>", "", ""),
    ("null-sender-with-list-id", "", "<digest.lists.example.org>", "digest.lists.example.org"),
    ("empty-list-id-falls-back", "news@shop.example", "<>", "news@shop.example"),
]


@pytest.mark.parametrize(
    ("envelope_from", "list_id", "expected"),
    [pytest.param(frm, lid, exp, id=i) for i, frm, lid, exp in LIST_IDS],
)
def test_list_identity(envelope_from: str, list_id: str, expected: str) -> None:
    assert list_identity(envelope_from, Headers(list_id=list_id)) == expected


def test_one_list_is_one_identity_whatever_the_recipient() -> None:
    paths = [
        f"team-bounces+{user}=example.net@lists.example.org" for user in ("jo", "ann", "x-1")
    ]
    assert len({list_identity(p, NONE) for p in paths}) == 1


def test_two_lists_are_two_identities() -> None:
    assert list_identity("a-bounces@lists.example.org", NONE) != list_identity(
        "b-bounces@lists.example.org", NONE
    )


def test_list_identity_is_safe_to_store() -> None:
    identity = list_identity("x@y", Headers(list_id="<" + "\udcff\x00" * 1000 + ">"))
    assert all(c.isprintable() for c in identity)
    assert len(identity) <= LIST_IDENTITY_LIMIT + 3


# --- spam verdicts (SpamAssassin and rspamd) ----------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (Headers(x_spam_flag="YES"), True),
        (Headers(x_spam_flag=" yes "), True),
        (Headers(x_spam_status="Yes, score=7.1 required=5.0 tests=BAYES_99 autolearn=no"), True),
        (Headers(x_spam_flag="NO"), False),
        (Headers(x_spam_status="No, score=-0.1 required=5.0 tests=ALL_TRUSTED"), False),
        (Headers(x_spam_status="Yesterday's news"), False),
        # rspamd's milter_headers: X-Spam, X-Spamd-Result, X-Rspamd-Action.
        (Headers(x_spam="Yes"), True),
        (Headers(x_spam="no"), False),
        (Headers(x_spamd_result="default: True [15.20 / 15.00]; BAYES_SPAM(5.10)[99.99%]"), True),
        (Headers(x_spamd_result="default: False [2.10 / 15.00]; ARC_NA(0.00)[]"), False),
        # A result without the verdict word's meaning: the score reaching the required one.
        (Headers(x_spamd_result="default: False [16.00 / 15.00]"), True),
        (Headers(x_spamd_result="default: [garbage"), False),
        (Headers(x_rspamd_action="reject"), True),
        (Headers(x_rspamd_action="add header"), True),
        (Headers(x_rspamd_action="Rewrite  Subject"), True),
        (Headers(x_rspamd_action="no action"), False),
        (Headers(x_rspamd_action="greylist"), False),
        (Headers(x_rspamd_action="soft reject"), False),
        (Headers(x_spam_status="Yes, score=15.20"), True),  # rspamd's x-spam-status routine
        (NONE, False),
    ],
)
def test_spam_verdict(headers: Headers, expected: bool) -> None:
    assert spam_verdict(headers) is expected


# --- own networks (MX mode) -----------------------------------------------------------------

OWN = ("198.51.100.0/24", "2001:db8:100::/48")


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("198.51.100.77", True),
        ("::ffff:198.51.100.77", True),
        ("2001:db8:100::25", True),
        ("[2001:db8:100::25]", True),
        ("203.0.113.9", False),
        ("2001:db8:200::1", False),
        ("unknown", False),
        ("", False),
        ("x" * 10_000, False),
    ],
)
def test_mentions_own_network(client: str, expected: bool) -> None:
    assert mentions_own_network(client, OWN) is expected


def test_mentions_own_network_without_networks() -> None:
    assert mentions_own_network("198.51.100.77", ()) is False


def test_mentions_own_network_rejects_a_bad_network() -> None:
    with pytest.raises(ValueError, match="not a network"):
        mentions_own_network("198.51.100.77", ["198.51.100.0/33"])


# --- hostile input --------------------------------------------------------------------------

wire_text = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
wire_headers = st.builds(
    Headers,
    auto_submitted=wire_text,
    precedence=wire_text,
    list_id=wire_text,
    list_unsubscribe=wire_text,
    x_spam_flag=wire_text,
    x_spam_status=wire_text,
    x_spam=wire_text,
    x_spamd_result=wire_text,
    x_rspamd_action=wire_text,
    received_count=st.integers(min_value=0, max_value=500),
)


@settings(max_examples=300, deadline=None)
@given(envelope_from=wire_text, headers=wire_headers, count=st.integers(0, 5))
def test_wire_text_never_makes_them_raise(envelope_from: str, headers: Headers, count: int) -> None:
    is_null_sender(envelope_from)
    auto = is_auto_reply(envelope_from, headers, count)
    assert auto is False or count == 1
    identity = list_identity(envelope_from, headers)
    assert all(c.isprintable() for c in identity)
    assert isinstance(spam_verdict(headers), bool)
    assert mentions_own_network(envelope_from, OWN) in (True, False)
