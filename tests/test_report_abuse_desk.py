"""What confused an abuse desk in the report, read from a real store (SQLite and PostgreSQL).

Each test is one complaint: a released bot listed as `ok, 0.0` with nothing
about what it reached; a score beside evidence weights with no word on decay;
`+0.0` rows with empty examples; "too many delivery failures" beside an `ok`
customer's single bounce; an operator's pin shown as spam; the scatter of a
one-sender page saying "no activity"; "1 flagged senders"; an audit note cut
before its last words.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from extrusion.policyd.holdqueue import postsuper_detail
from extrusion.report.html import render_html
from extrusion.report.jsonfmt import render_json
from extrusion.report.load import Query, load_report
from extrusion.report.model import Category
from extrusion.report.text import render_text
from extrusion.scoring.events import State
from extrusion.scoring.rows import PIN_SET, SenderDelta
from extrusion.scoring.store import Store
from extrusion_dev.sample import at

from .test_report_load import FAILURE, SENT, Scenario, finding

HL = 3600.0
UNTIL = at("2007-05-20 00:00:00")
SINCE = at("2007-05-19 00:00:00")
BOT = "ip:2001:db8:ffff:1234:5678:9abc:def0:1"
ONE_BOUNCE = "sasl:florist@example.net"
PINNED = "sasl:reseller@example.net"
BUSY = "sasl:busy@example.net"
# What postsuper writes for `postsuper -h -` of 7 messages, and the note the hold became.
POSTSUPER = "".join(f"postsuper: 4Q{i:08d}XYZ: placed on hold\n" for i in range(7)) + (
    "postsuper: Placed on hold: 7 messages\n")
HOLD_NOTE = "7 queued messages held: " + "x" * 600 + " postsuper: Placed on hold: 7 messages"


def write(store: Store) -> None:
    s = Scenario(store)
    # A bot, throttled and decayed back to ok by the end of the day; a zero-weight
    # trigger row with a count and no examples, as the engine writes after the trigger.
    s.message(BOT, "2007-05-19 01:00:00", "x@bot.example", 900, "bot", "2001:db8::1",
              [(f"u{i}@invented.example", FAILURE) for i in range(30)])
    s.sender(BOT, "2007-05-19 01:05:00", "ok", 182.0, {
        "failed_recipients": finding(30, 182.0, ["u0@invented.example"], "2007-05-19 01:00:30"),
        "too_many_failures": finding(214, 0.0, [], "2007-05-19 01:01:00",
                                     failed_recipients=30, trigger=20),
        "spam_verdicts": finding(3, 0.0, [], "2007-05-19 01:01:00"),
    }, first="2007-05-19 01:00:00")
    s.change(BOT, "2007-05-19 01:01:00", State.OK, State.THROTTLED, 40.0,
             "too_many_failures: 30 distinct recipients failed")
    s.change(BOT, "2007-05-19 03:00:00", State.THROTTLED, State.HELD, 60.0, HOLD_NOTE)
    s.change(BOT, "2007-05-19 09:00:00", State.HELD, State.OK, 2.0, "evidence decayed")
    # A customer in ok with one bounce among its mail.
    s.message(ONE_BOUNCE, "2007-05-19 10:00:00", "shop@florist.example", 2000, "mail",
              "192.0.2.5", [("gone@example.com", FAILURE), ("fine@example.com", SENT)])
    s.sender(ONE_BOUNCE, "2007-05-19 10:01:00", "ok", 1.0, {
        "failed_recipients": finding(1, 1.0, ["gone@example.com"], "2007-05-19 10:00:30")},
        first="2007-05-19 10:00:00")
    # A sender an operator held, with no weighty evidence.
    s.message(PINNED, "2007-05-19 12:00:00", "sales@reseller.example", 2000, "mail",
              "192.0.2.6", [("a@example.com", SENT)])
    s.sender(PINNED, "2007-05-19 12:00:00", "held", 0.0, {}, first="2007-05-19 12:00:00")
    s.batch.add_sender(SenderDelta(PINNED, time=at("2007-05-19 12:30:00"), pin=PIN_SET,
                                   pinned="held", pinned_by="alice",
                                   pinned_reason="customer asked: ticket 4711"), HL)
    s.change(PINNED, "2007-05-19 12:30:00", State.OK, State.HELD, 0.0,
             "pinned to held: customer asked: ticket 4711", who="alice")
    # 120 messages over six hours from one sender in ok.
    for i in range(120):
        s.message(BUSY, f"2007-05-19 {13 + i // 20:02d}:{i % 20 * 3:02d}:00",
                  "news@busy.example", 1000, "mail", "192.0.2.7",
                  [(f"reader{i}@example.org", SENT)])
    s.sender(BUSY, "2007-05-19 18:57:00", "ok", 0.0, {}, first="2007-05-19 13:00:00")
    s.write()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    write(s)
    yield s
    s.close()


def report(store: Store, **kw: Any) -> Any:
    return load_report(store, Query(until=UNTIL, since=SINCE, half_life=HL, **kw),
                       generated_at=UNTIL, source="test")


def section(text: str, key: str) -> str:
    start = text.index(f"=== {key} ")
    end = text.find("\n=== ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_a_released_bot_shows_the_worst_state_beside_the_current_one(store: Store) -> None:
    r = report(store)
    bot = next(s for s in r.senders if s.key == BOT)
    assert (bot.state, bot.worst, bot.worst_at) == (State.OK, State.HELD, at("2007-05-19 03:00:00"))
    assert f"=== {BOT} customer=- state=ok worst=held score=0.0 " in render_text(r)
    js = next(s for s in json.loads(render_json(r))["senders"] if s["sender"] == BOT)
    assert (js["state"], js["worst_state"]) == ("ok", "held")
    assert js["worst_state_at"] == "2007-05-19T03:00:00+00:00"
    assert ('<span class="state-ok">ok</span> <span class="worst state-held">(worst held)</span>'
            in render_html(r))


def test_the_decay_of_scores_is_stated_beside_weights_at_the_time(store: Store) -> None:
    r = report(store)
    text = render_text(r)
    assert ("Scores are as of the end of the period and halve every hour without new "
            "evidence ([scoring] half_life_seconds)") in text
    assert "Evidence (weights as added at the time, before decay):" in section(text, BOT)
    assert json.loads(render_json(r))["half_life_seconds"] == HL
    page = render_html(r)
    assert "halve every hour" in page and "<th>weight at the time</th>" in page


def test_findings_that_add_nothing_are_facts_or_gone(store: Store) -> None:
    r = report(store)
    bot = section(render_text(r), BOT)
    # The trigger row says something (it fired) but added nothing: no "+0.0".
    assert "  - too_many_failures: count=214; " in bot
    assert "+0.0" not in bot and "examples=\n" not in bot and "examples=;" not in bot
    # A zero-weight finding without examples is noise and is left out everywhere.
    assert "spam_verdicts" not in bot
    js = next(s for s in json.loads(render_json(r))["senders"] if s["sender"] == BOT)
    assert [(f["kind"], f["weighs"]) for f in js["findings"]] == [
        ("failed_recipients", True), ("too_many_failures", False)]
    page = render_html(r)
    assert "spam_verdicts" not in page and "examples=<br>" not in page
    assert '<td>too_many_failures</td><td class="num">–</td>' in page


def test_an_ok_sender_with_one_bounce_has_no_reason_line(store: Store) -> None:
    r = report(store, sender=ONE_BOUNCE)
    (s,) = r.senders
    assert s.reasons == ()
    text = render_text(r)
    assert "Reasons:" not in text and "failed" in section(text, ONE_BOUNCE)
    assert json.loads(render_json(r))["senders"][0]["reasons"] == []


def test_a_pin_is_an_operator_action_not_spam(store: Store) -> None:
    r = report(store)
    s = next(s for s in r.senders if s.key == PINNED)
    assert s.category is Category.OPERATOR
    text = section(render_text(r), PINNED)
    assert "Operator action: pinned to held by alice: customer asked: ticket 4711" in text
    js = next(s for s in json.loads(render_json(r))["senders"] if s["sender"] == PINNED)
    assert js["category"] == "operator"
    assert js["pin"] == {"state": "held", "by": "alice", "reason": "customer asked: ticket 4711"}
    assert "pinned to held" not in " ".join(js["reasons"])
    page = render_html(r)
    assert '<p class="pin">Operator action: pinned to held by alice' in page
    assert "looks like operator&#x27;s decision" in page or "looks like operator's decision" in page


def test_a_one_sender_page_plots_that_senders_activity(store: Store) -> None:
    r = report(store, sender=BUSY)
    (a,) = r.activity
    assert (a.key, a.messages, a.recipients, a.hours_active) == (BUSY, 120, 120, 6)
    page = render_html(r)
    assert "no activity in this period" not in page


def test_one_flagged_sender_is_singular(store: Store) -> None:
    r = report(store, sender=PINNED)
    assert render_text(r).startswith("extrusion report: 1 flagged sender, 0 misconfigured\n")
    page = render_html(r)
    assert "<p>1 flagged sender (0 look like viruses)" in page
    assert "1 flagged senders" not in page


def test_an_audit_note_is_shown_whole(store: Store) -> None:
    r = report(store)
    text = section(render_text(r), BOT)
    assert HOLD_NOTE in text
    assert HOLD_NOTE in render_html(r)
    js = next(s for s in json.loads(render_json(r))["senders"] if s["sender"] == BOT)
    assert HOLD_NOTE in [c["reason"] for c in js["state_changes"]]


def test_postsuper_summary_survives_into_the_audit_note() -> None:
    assert postsuper_detail(POSTSUPER, 0) == "postsuper: Placed on hold: 7 messages"
    many = "".join(f"postsuper: warning: {i:04d} odd\n" for i in range(200)) + (
        "postsuper: Released from hold: 3 messages\n")
    detail = postsuper_detail(many, 0)
    assert len(detail) <= 1000 and detail.endswith("postsuper: Released from hold: 3 messages")
    assert postsuper_detail("", 1) == "exit status 1"
