"""The report renderers: classic text (golden file), JSON shape, self-contained HTML."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from extrusion.report.html import render_html
from extrusion.report.jsonfmt import SCHEMA_VERSION, render_json
from extrusion.report.model import (
    Category,
    Counts,
    MessageRecord,
    RecipientLine,
    Report,
    ReportOutcome,
    SenderReport,
    StateChangeRecord,
)
from extrusion.report.text import message_lines, render_text
from extrusion.report.times import BadTime, parse_since, report_zone
from extrusion.scoring.events import State
from extrusion_dev import sample

GOLDEN = Path(__file__).parent / "data" / "report"
T0 = sample.at("2007-05-19 10:47:15")


def golden(name: str, actual: str) -> str:
    """The golden file's text; EXTRUSION_REGEN_GOLDEN=1 rewrites it from `actual` first."""
    path = GOLDEN / name
    if os.environ.get("EXTRUSION_REGEN_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
    return path.read_text(encoding="utf-8")


def test_text_report_of_the_classic_scenario_matches_the_golden_file() -> None:
    actual = render_text(sample.classic_scenario())
    assert actual == golden("classic.txt", actual)


def test_golden_file_keeps_the_talks_listings_verbatim() -> None:
    text = (GOLDEN / "classic.txt").read_text(encoding="utf-8")
    # The listings from the talk, as abuse teams know them.
    assert (
        "2007-05-19 10:50:22 985eubg@msa.hinet.net Size=2206\n"
        "!!! cy-i88222@ms.cy.edw.tw\n"
        "!!! cynthia0421@1111.com.tw\n"
        "-> cy.tung@msa.hinet.net\n"
        "-> cy3219@hotmail.com\n"
        "-> cy_chiang@hotmail.com\n"
        "-> cyc.aa508@msa.hinet.net\n"
        "and 31 more valid destinations\n"
    ) in text
    assert (
        "HELO = lrhnow.usa.net\n"
        "2007-05-19 23:11:22 kwntefsqhi@usa.net Size=8339\n"
        "-> ken@example1.demon.co.uk\n"
    ) in text
    # Rejection daemons are a section of their own, after the flagged senders.
    flagged = text.index("Flagged senders")
    misconfigured = text.index("Misconfigured: rejection daemons")
    assert flagged < text.index("=== sasl:dsl-0047@example.net") < misconfigured
    assert misconfigured < text.index("=== customer:acme")


def _msg(failed: int, delivered: int, pending: int = 0, **kw: object) -> MessageRecord:
    rcpts = (
        *(RecipientLine(f"f{i}@x.example", ReportOutcome.FAILED) for i in range(failed)),
        *(RecipientLine(f"d{i}@x.example", ReportOutcome.DELIVERED) for i in range(delivered)),
        *(RecipientLine(f"p{i}@x.example", ReportOutcome.PENDING) for i in range(pending)),
    )
    return MessageRecord(T0, str(kw.get("envelope_from", "a@b.example")), 100, rcpts,
                         helo=str(kw.get("helo", "")), helo_suspect=bool(kw.get("suspect")))


@pytest.mark.parametrize(
    ("failed", "delivered", "pending", "expected_tail"),
    [
        (3, 2, 0, ["!!! f0@x.example", "!!! f1@x.example", "!!! f2@x.example",
                   "-> d0@x.example", "-> d1@x.example"]),
        (1, 6, 0, ["!!! f0@x.example", *[f"-> d{i}@x.example" for i in range(5)],
                   "and 1 more valid destination"]),
        (8, 3, 0, [*[f"!!! f{i}@x.example" for i in range(6)], "and 2 more failures",
                   "and 3 more valid destinations"]),
        (0, 0, 2, ["... p0@x.example", "... p1@x.example"]),
        (5, 2, 1, [*[f"!!! f{i}@x.example" for i in range(5)], "... p0@x.example",
                   "and 2 more valid destinations"]),
    ],
)
def test_classic_form_lists_failures_first_and_cuts_long_lists(
    failed: int, delivered: int, pending: int, expected_tail: list[str]
) -> None:
    lines = message_lines(_msg(failed, delivered, pending), max_destinations=6)
    assert lines[0] == "2007-05-19 10:47:15 a@b.example Size=100"
    assert lines[1:] == expected_tail


def test_helo_line_only_above_a_message_whose_helo_is_suspect() -> None:
    assert message_lines(_msg(0, 1, helo="mail.example.net"))[0].startswith("2007-05-19")
    lines = message_lines(_msg(0, 1, helo="lrhnow.usa.net", suspect=True))
    assert lines[:2] == ["HELO = lrhnow.usa.net", "2007-05-19 10:47:15 a@b.example Size=100"]


def test_null_sender_is_shown_as_angle_brackets() -> None:
    assert message_lines(_msg(1, 0, envelope_from=""))[0].endswith(" <> Size=100")


def test_times_are_printed_in_the_configured_zone() -> None:
    london = report_zone("Europe/London")  # BST in May: UTC+1
    assert message_lines(_msg(0, 1), tz=london)[0].startswith("2007-05-19 11:47:15 ")
    text = render_text(sample.classic_scenario(), tz=london)
    assert "(BST)" in text.splitlines()[1]


def test_empty_report_says_so() -> None:
    report = Report(generated_at=T0, until=T0, since=T0 - 86400)
    assert "No flagged or misconfigured senders in this period." in render_text(report)
    assert "No flagged or misconfigured senders" in render_html(report)


def test_senders_with_more_messages_than_listed_say_how_many_are_not_shown() -> None:
    s = sample.classic_scenario().senders[0]
    capped = replace(s, messages=s.messages[:1])
    report = Report(generated_at=T0, until=T0, senders=(capped,))
    assert "and 3 more messages not listed" in render_text(report)
    assert "and 3 more messages not listed" in render_html(report)


# --- JSON -------------------------------------------------------------------------------------

SENDER_KEYS = [
    "sender", "customer", "state", "score", "category", "first_seen", "last_seen", "detected_at",
    "counts", "reasons", "findings", "state_changes", "failures_per_hour", "messages",
    "messages_omitted", "worst_state", "worst_state_at", "pin",
]
MESSAGE_KEYS = [
    "time", "queue_id", "mta", "client_addr", "envelope_from", "size", "helo", "helo_suspect",
    "recipients",
]


def test_json_has_stable_keys_in_a_stable_order() -> None:
    doc = json.loads(render_json(sample.classic_scenario()))
    assert list(doc) == [
        "version", "generated_at", "since", "until", "source", "senders", "misconfigured",
        "activity", "half_life_seconds",
    ]
    assert doc["version"] == SCHEMA_VERSION
    bot = doc["senders"][0]
    assert list(bot) == SENDER_KEYS
    assert list(bot["messages"][0]) == MESSAGE_KEYS
    assert list(bot["messages"][0]["recipients"][0]) == [
        "address", "outcome", "status", "dsn", "reply", "time",
    ]
    assert list(bot["findings"][0]) == ["kind", "score", "summary", "evidence", "weighs"]
    assert list(bot["counts"]) == ["messages", "recipients", "delivered", "failed", "pending"]
    assert list(doc["activity"][0]) == [
        "sender", "state", "messages", "recipients", "failed", "spamminess", "hours_active",
        "blocks_active",
    ]


def test_json_carries_the_same_content_as_the_text() -> None:
    report = sample.classic_scenario()
    doc = json.loads(render_json(report))
    bot, worm = doc["senders"]
    assert bot["sender"] == "sasl:dsl-0047@example.net"
    assert bot["state"] == "held" and bot["score"] == 57.5 and bot["category"] == "spam"
    assert bot["first_seen"] == "2007-05-19T10:47:15+00:00"
    assert bot["detected_at"] == "2007-05-19T10:59:20+00:00"
    assert bot["counts"] == {"messages": 4, "recipients": 104, "delivered": 88, "failed": 15,
                             "pending": 1}
    assert sum(h["failed"] for h in bot["failures_per_hour"]) == 15
    second = bot["messages"][1]
    assert second["envelope_from"] == "985eubg@msa.hinet.net" and second["size"] == 2206
    outcomes = [r["outcome"] for r in second["recipients"]]
    assert outcomes.count("failed") == 2 and outcomes.count("delivered") == 35
    assert worm["category"] == "virus"
    assert worm["messages"][0]["helo"] == "lrhnow.usa.net"
    assert worm["messages"][0]["helo_suspect"] is True
    assert [m["sender"] for m in doc["misconfigured"]] == ["customer:acme"]
    assert doc["since"] == "2007-05-19T00:00:00+00:00"


def test_json_is_byte_for_byte_reproducible() -> None:
    assert render_json(sample.classic_scenario()) == render_json(sample.classic_scenario())


# --- HTML -------------------------------------------------------------------------------------

EXTERNAL_REF = re.compile(r"""(?:src|href)\s*=\s*["'](?!#|data:)""", re.IGNORECASE)


def test_html_is_self_contained_and_scriptless() -> None:
    page = render_html(sample.classic_scenario())
    assert page.startswith("<!DOCTYPE html>")
    assert EXTERNAL_REF.search(page) is None
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_html_has_the_three_kinds_of_plot_as_inline_svg() -> None:
    page = render_html(sample.classic_scenario())
    assert page.count('<figure class="plot detections"><svg') == 1
    assert page.count('<figure class="plot spamminess"><svg') == 1
    # One failures-per-hour plot per flagged sender (two here), none for the misconfigured.
    assert page.count('<figure class="plot outbreak"><svg') == 2
    assert "Detection of spam (black) and viruses (red)" in page
    assert "Spamminess vs hours of activity" in page
    assert "Failures per hour: sasl:dsl-0047@example.net" in page
    # Several SVGs on one page: their ids must not collide.
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_html_plots_only_the_highest_scores_when_told_to() -> None:
    page = render_html(sample.classic_scenario(), plot_senders=1)
    assert page.count('class="plot outbreak"') == 1
    assert "Failures per hour: sasl:dsl-0047@example.net" in page  # the higher score


def test_html_lists_every_flagged_and_misconfigured_sender() -> None:
    page = render_html(sample.classic_scenario())
    for key in ("sasl:dsl-0047@example.net", "ip:198.51.100.23", "customer:acme"):
        assert f">{key}</a>" in page
    assert "!!! 0930456496@yahoo.com" in page
    assert "and 31 more valid destinations" in page


def test_plots_cope_with_no_data() -> None:
    empty = SenderReport(key="ip:192.0.2.1", state=State.THROTTLED, score=25.0,
                         first_seen=T0, last_seen=T0, counts=Counts())
    page = render_html(Report(generated_at=T0, until=T0, senders=(empty,)))
    assert "no senders flagged in this period" in page
    assert "no activity in this period" in page
    assert "no delivery outcomes logged" in page


def test_detections_over_a_long_period_are_counted_per_day() -> None:
    base = sample.classic_scenario()
    spread = tuple(
        replace(s, key=f"ip:192.0.2.{i}", changes=(
            StateChangeRecord(T0 + i * 86400, State.OK, State.THROTTLED, 25.0, "x"),))
        for i, s in enumerate(base.senders * 5)
    )
    report = Report(generated_at=T0 + 30 * 86400, since=T0, until=T0 + 30 * 86400,
                    senders=spread)
    assert "senders flagged per day" in render_html(report)
    assert spread[3].detected_at == T0 + 3 * 86400
    assert spread[0].category in (Category.SPAM, Category.VIRUS)


# --- --since ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("24h", 1000.0 * 86400 - 86400), ("90m", 1000.0 * 86400 - 5400),
     ("7d", 1000.0 * 86400 - 7 * 86400), ("3600s", 1000.0 * 86400 - 3600),
     ("2w", 1000.0 * 86400 - 14 * 86400), ("all", None),
     ("2007-05-19", T0 - (10 * 3600 + 47 * 60 + 15)),
     ("2007-05-19T10:47:15+00:00", T0)],
)
def test_since_accepts_durations_dates_and_all(value: str, expected: float | None) -> None:
    assert parse_since(value, now=1000.0 * 86400) == expected


@pytest.mark.parametrize("value", ["yesterday", "24x", "-3h", ""])
def test_since_rejects_what_it_cannot_read(value: str) -> None:
    with pytest.raises(BadTime, match="expected a duration"):
        parse_since(value, now=0.0)


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(BadTime, match="unknown time zone 'Mars/Olympus'"):
        report_zone("Mars/Olympus")
