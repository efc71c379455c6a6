"""The HELO verdict cache: the same verdicts as `helo_anomalies()` itself, whatever the
key leaves out (the client's address for a HELO that cannot be an address literal)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extrusion.scoring import helocache
from extrusion.scoring.helo import helo_anomalies
from extrusion.scoring.helocache import helo_note, judge_helos, session_helos

OWN = ("isp.example",)

helo_texts = st.sampled_from([
    "pc.user1.example", "[198.51.100.5]", "198.51.100.5", "[203.0.113.9]", "203.0.113.9",
    "[IPv6:2001:db8::1]", "2001:db8::1", "::1", " 203.0.113.9 ", "JOHNS-PC", "",
    "lrhnow.usa.net", "mail.isp.example", "1st.example.com", "[192.168.1.2]", "x" * 70,
    "remote.example", "9", "[", ":",
])
clients = st.sampled_from(["198.51.100.5", "203.0.113.9", "192.0.2.1", "", "2001:db8::1"])


@settings(max_examples=300, deadline=None)
@given(helos=st.lists(helo_texts, min_size=1, max_size=3), client=clients,
       other=clients, sender=st.sampled_from(["a@usa.net", "b@customer.example", ""]),
       rcpts=st.lists(st.sampled_from(["r@remote.example", "x@usa.net"]), max_size=2))
def test_cached_verdict_is_the_judgement_for_every_client(
        helos: list[str], client: str, other: str, sender: str, rcpts: list[str]) -> None:
    # Asked for one client first, then another: a literal judged for the first must
    # not answer for the second.
    for addr in (client, other):
        cached = judge_helos(tuple(helos), addr, "", sender, rcpts, OWN)
        fresh = helo_anomalies(tuple(helos), addr, client_name="", envelope_from=sender,
                               recipients=rcpts, own_domains=OWN)
        assert list(cached) == fresh


def test_a_literal_is_judged_against_each_client() -> None:
    assert [f.kind for f in judge_helos(("[203.0.113.9]",), "198.51.100.5", "", "", (),
                                        OWN)] == ["helo_ip_mismatch"]
    assert judge_helos(("[203.0.113.9]",), "203.0.113.9", "", "", (), OWN) == ()


def test_a_name_from_a_new_client_address_is_a_cache_hit() -> None:
    judge_helos(("pc.cachetest.example",), "198.51.100.7", "", "u@customer.example", (), OWN)
    before = helocache._cached_helos.cache_info()
    judge_helos(("pc.cachetest.example",), "198.51.100.8", "", "u@customer.example", (), OWN)
    after = helocache._cached_helos.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


def test_a_recipient_in_the_helos_domain_is_judged_at_rcpt_as_in_a_list() -> None:
    # The policy server asks with one recipient, the log with all of them: a recipient
    # the HELO names (helo_lie's "the recipient's own domain") counts either way.
    helos, client, sender = ("mail.usa.net",), "198.51.100.5", "a@customer.example"
    one = judge_helos(helos, client, "", sender, ("x@usa.net",), OWN)
    listed = judge_helos(helos, client, "", sender, ["r@remote.example", "x@usa.net"], OWN)
    alone = judge_helos(helos, client, "", sender, ("r@remote.example",), OWN)
    for rcpts, found in ((["x@usa.net"], one), (["r@remote.example", "x@usa.net"], listed),
                         (["r@remote.example"], alone)):
        assert list(found) == helo_anomalies(helos, client, client_name="",
                                             envelope_from=sender, recipients=rcpts,
                                             own_domains=OWN)
    assert [f.kind for f in one] == [f.kind for f in listed] != [f.kind for f in alone]


def test_a_new_client_address_reads_the_helo_and_sender_from_their_caches() -> None:
    judge_helos(("pc.shapetest.example",), "198.51.100.7", "", "u@shape.example", (), OWN)
    before = (helocache._helo_shape.cache_info(), helocache._sender_key.cache_info())
    for n in range(3):
        judge_helos(("pc.shapetest.example",), f"198.51.100.{20 + n}", "", "u@shape.example",
                    (f"r{n}@remote.example",), OWN)
    after = (helocache._helo_shape.cache_info(), helocache._sender_key.cache_info())
    assert [(a.hits - b.hits, a.misses - b.misses)
            for a, b in zip(after, before, strict=True)] == [(3, 0), (3, 0)]


@settings(max_examples=300, deadline=None)
@given(helos=st.lists(helo_texts, min_size=1, max_size=3), client=clients,
       other=clients, sender=st.sampled_from(["a@usa.net", "b@customer.example", ""]),
       rcpts=st.lists(st.sampled_from(["r@remote.example", "x@usa.net", "y@ISP.example.",
                                       "z@mail.isp.example", "noat", ""]), max_size=4),
       own=st.sampled_from([OWN, (), ("usa.net",)]))
def test_a_sessions_remembered_verdict_is_the_judgement_of_each_of_its_requests(
        helos: list[str], client: str, other: str, sender: str, rcpts: list[str],
        own: tuple[str, ...]) -> None:
    # A message's RCPTs, then its END-OF-MESSAGE (no recipient), in two sessions with
    # the same HELO: each answer is the one judge_helos() gives for that request.
    for addr in (client, other):
        for rcpt in [*rcpts, ""]:
            asked = (rcpt,) if rcpt else ()
            assert session_helos(tuple(helos), addr, "", sender, rcpt, own) == judge_helos(
                tuple(helos), addr, "", sender, asked, own)
        assert helo_note(tuple(helos), addr, "", sender, own) == ", ".join(
            sorted({f.kind for f in judge_helos(tuple(helos), addr, "", sender, (), own)}))


def test_a_recipient_the_helo_names_is_judged_though_the_session_is_remembered() -> None:
    helos, client, sender = ("mail.usa.net",), "198.51.100.5", "a@customer.example"
    alone = session_helos(helos, client, "", sender, "r@remote.example", OWN)
    named = session_helos(helos, client, "", sender, "x@usa.net", OWN)
    assert named == judge_helos(helos, client, "", sender, ("x@usa.net",), OWN) != alone


def test_the_session_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helocache, "SESSION_CACHE", 8)
    for n in range(40):
        session_helos(("pc.bound.example",), f"198.51.100.{n}", "", "u@bound.example", "",
                      OWN)
        assert len(helocache._sessions) <= 8
