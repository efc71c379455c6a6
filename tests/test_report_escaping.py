"""Hostile HELOs, addresses and replies: no forged report lines, no terminal tricks, no script."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from extrusion.report.clean import MAX_CHARS, clean, decode_wire
from extrusion.report.html import render_html
from extrusion.report.jsonfmt import render_json
from extrusion.report.model import (
    Category,
    Counts,
    Finding,
    MessageRecord,
    RecipientLine,
    Report,
    ReportOutcome,
    SenderActivity,
    SenderReport,
    StateChangeRecord,
)
from extrusion.report.text import render_text
from extrusion.scoring.events import State
from extrusion.scoring.schema import TEXT_LEN
from extrusion_dev.sample import at

T0 = at("2007-05-19 23:11:22")

SCRIPT = "<script>alert(1)</script>"
FORGED_LINES = "mail.example\n!!! forged@victim.example\n-> also-forged@victim.example"
ATTRIBUTE = '"><img src=x onerror=alert(1)>@evil.example'
TERMINAL = "\x1b[2J\x1b]0;owned\x07\x00nul\x7f"
HUGE = "A" * 10_000
NOT_UTF8 = decode_wire(b"h\xff\xfelo\xc3(.example")
BIDI = "\u202eexe.txt"
MATH = "$\\frac{1}{0}$ {{x}} %s"
CLOSE_PRE = "</pre></section><script>x()</script>"

HOSTILE = [SCRIPT, FORGED_LINES, ATTRIBUTE, TERMINAL, HUGE, NOT_UTF8, BIDI, MATH, CLOSE_PRE]


def hostile_report() -> Report:
    messages = tuple(
        MessageRecord(
            T0 + i,
            envelope_from=h,
            size=1000,
            recipients=(
                RecipientLine(h, ReportOutcome.FAILED, "bounced", h, h),
                RecipientLine(f"{h}@x", ReportOutcome.DELIVERED, "sent"),
            ),
            helo=h,
            helo_suspect=True,
            queue_id=h,
            mta=h,
            client_addr=h,
        )
        for i, h in enumerate(HOSTILE)
    )
    senders = tuple(
        SenderReport(
            key=f"sasl:{h}",
            customer=h,
            state=State.HELD,
            score=50.0 + i,
            first_seen=T0,
            last_seen=T0 + 60,
            counts=Counts(messages=len(messages), recipients=18, delivered=9, failed=9),
            category=Category.VIRUS,
            reasons=(h, f"HELO {h}"),
            findings=(Finding(h, h, 10.0, {h: h, "examples": [h, h], "nested": {h: [h]}}),),
            messages=messages,
            changes=(StateChangeRecord(T0 + 30, State.OK, State.HELD, 50.0, h, who=h),),
        )
        for i, h in enumerate(HOSTILE)
    )
    activity = tuple(
        SenderActivity(s.key, s.state, 9, 18, 9, 3, 1, Category.VIRUS) for s in senders
    )
    return Report(generated_at=T0 + 3600, until=T0 + 3600, since=T0 - 3600, senders=senders,
                  misconfigured=senders[:2], activity=activity, source=SCRIPT)


# --- clean() ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("mail.example.com", "mail.example.com"),
        ("jürgen@例え.jp", "jürgen@例え.jp"),  # printable non-ASCII stays as it is
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("\x1b[31m", "\\x1b[31m"),
        ("\x00\x7f\x85", "\\x00\\x7f\\x85"),
        (NOT_UTF8, "h\\xff\\xfelo\\xc3(.example"),  # the original bytes, visibly
        (BIDI, "\\u202eexe.txt"),
        ("\ud800", "\\ud800"),  # a lone surrogate that is not from surrogateescape
        ("back\\slash", "back\\\\slash"),  # so "\\n" in the output is never ambiguous
    ],
)
def test_clean_escapes_what_cannot_be_shown_and_keeps_the_rest(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_clean_cuts_huge_strings_and_says_how_much() -> None:
    out = clean(HUGE)
    assert out.startswith("A" * MAX_CHARS)
    assert out.endswith(f"…[{10_000 - MAX_CHARS} more chars]")
    assert len(out) < MAX_CHARS + 40


def test_model_cleans_every_string_it_is_given() -> None:
    msg = MessageRecord(T0, TERMINAL, 1, (RecipientLine(FORGED_LINES, ReportOutcome.FAILED),),
                        helo=NOT_UTF8)
    assert msg.envelope_from.isprintable() and msg.helo.isprintable()
    assert msg.recipients[0].address.isprintable()
    finding = Finding("k", "s", 0.0, {"helos": [TERMINAL], TERMINAL: {"x": NOT_UTF8}})
    assert json.dumps(dict(finding.evidence), ensure_ascii=False).encode("utf-8")
    assert all(k.isprintable() for k in finding.evidence)


# --- text -----------------------------------------------------------------------------------


def test_text_report_cannot_be_forged_or_drive_a_terminal() -> None:
    text = render_text(hostile_report())
    text.encode("utf-8")  # no lone surrogates: encodes strictly
    for line in text.splitlines():
        assert line.isprintable(), repr(line)
        # Every field is cut, so even a line of several fields stays bounded; an audit
        # note is shown whole up to the store's own bound on it.
        assert len(line) < 8 * MAX_CHARS + TEXT_LEN
    assert "\x1b" not in text and "\x00" not in text and "\u202e" not in text
    lines = text.splitlines()
    # The newline in the HELO stayed inside the HELO line.
    assert not any(line.startswith("!!! forged@") for line in lines)
    assert not any(line.startswith("-> also-forged@") for line in lines)
    assert "HELO = mail.example\\n!!! forged@victim.example\\n-> also-forged@" in text
    assert "HELO = h\\xff\\xfelo\\xc3(.example" in text


# --- JSON -----------------------------------------------------------------------------------


def test_json_report_is_valid_utf8_with_the_escaped_strings() -> None:
    raw = render_json(hostile_report()).encode("utf-8")
    doc = json.loads(raw)
    helos = [m["helo"] for m in doc["senders"][0]["messages"]]
    assert SCRIPT in helos  # JSON keeps it as data; consumers escape for their medium
    assert "h\\xff\\xfelo\\xc3(.example" in helos
    assert all(len(h) < MAX_CHARS + 40 for h in helos)
    assert all(h.isprintable() for h in helos)


# --- HTML -----------------------------------------------------------------------------------

# Every element the page is allowed to have: anything else came from input.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "figure", "table", "tr",
    "th", "td", "a", "ul", "li", "br", "section", "pre", "span",
    # matplotlib's SVG
    "svg", "metadata", "defs", "g", "path", "use", "text", "clippath", "rect",
    "rdf:rdf", "ns2:work", "dc:type", "dc:date", "dc:format", "dc:creator", "cc:work",
    "cc:agent", "dc:title", "image", "polyline", "circle", "tspan",
}


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_renders_hostile_strings_as_text_only() -> None:
    page = render_html(hostile_report())
    page.encode("utf-8")
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.tags <= ALLOWED_TAGS, parser.tags - ALLOWED_TAGS
    assert not any(a.startswith("on") for a in parser.attributes)
    assert "<script" not in page.lower() and "<img" not in page.lower()
    text = "".join(parser.text)
    # What the operator reads is the hostile string itself, shown, not executed.
    assert SCRIPT in text
    assert "HELO = " + SCRIPT in text
    assert '"><img src=x onerror=alert(1)>@evil.example' in text
    assert "h\\xff\\xfelo\\xc3(.example" in text
    assert "\\x1b[2J" in text


def test_plot_titles_with_dollars_and_markup_do_not_break_the_svg() -> None:
    page = render_html(hostile_report())
    # "$...$" is not parsed as math (that could raise), and markup in a title is escaped
    # (the backslash is doubled by clean(), so escapes in reports are unambiguous).
    assert "Failures per hour: sasl:$\\\\frac{1}{0}$" in page
    assert "Failures per hour: sasl:&lt;script&gt;" in page
