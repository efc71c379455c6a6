"""`classify()` answers a final outcome from its cache as `_final()` does from the rules.

The cache is keyed by status, DSN code and reply alike: one reply text can be
a greylisting (a `rejected` 4xx, temporary) or a refusal, by its status and code.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from extrusion.scoring.classify import _final, classify
from extrusion.scoring.events import Status

REPLIES = [
    "host mx.example.net[192.0.2.1] said: 550 5.1.1 <a@example.net>: user unknown",
    "host mx.example.net[192.0.2.1] said: 554 5.7.1 Message rejected as spam",
    "450 4.7.1 Service unavailable, try again later",
    "Host or domain name not found. Name service error for name=example.org type=MX",
    "552 mailbox full", "virus found", "", "5.7.1", "connection timed out",
]
TEXTS = st.one_of(st.sampled_from(REPLIES), st.text(max_size=40))
OUTCOMES = st.lists(st.tuples(
    st.sampled_from([Status.BOUNCED, Status.EXPIRED, Status.REJECTED, "bounced"]),
    st.sampled_from(["", "4.7.1", "5.7.1", "5.1.1", "5.0.0", "4.0.0"]), TEXTS,
), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(outcomes=OUTCOMES)
def test_a_cached_class_is_the_rules_class(outcomes: list[tuple[Status, str, str]]) -> None:
    for status, dsn, reply in outcomes + outcomes[::-1]:  # each asked again: from the cache
        assert classify(status, dsn, reply) is _final(status, dsn, reply)


def test_text_that_is_no_str_is_classified_without_the_cache() -> None:
    assert classify(Status.BOUNCED, None, ["550"]) is _final(  # type: ignore[arg-type]
        Status.BOUNCED, "", "")
