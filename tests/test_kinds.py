"""Finding kinds: one enum, whose values are the keys stored findings already have, and
one table of words read by the report, the engine's decisions and `extrusion senders`."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from extrusion.report import words
from extrusion.scoring import decisions
from extrusion.scoring.kinds import FACT_KINDS, VIRUS_KINDS, Kind
from extrusion.scoring.wording import DEFAULT_PHRASE, WORDS, phrase, sentence

PACKAGE = Path(__file__).resolve().parent.parent / "extrusion"

# The keys stores and JSON reports hold today: changing one would orphan stored findings.
STORED = {
    "failed_recipients", "too_many_failures", "spam_rejections", "virus_rejections",
    "throttled_refusals", "misconfigured", "mailing_lists", "list_failures_discounted",
    "forwarded_discounted", "helo_anomalies", "freemail_unauthenticated",
    "unauthenticated_from_sasl_address", "envelope_domains", "recipient_spread", "probation",
    "spam_verdicts", "own_network_inbound", "own_network_refused", "postscreen_verdicts",
    "direct_to_mx",
}
# The same words as literals elsewhere, meaning something else: a report category or
# a state (`misconfigured`), a slot or a rule's name (`probation`), a count's field.
OTHER_MEANINGS = {
    ("report/model.py", "misconfigured"), ("report/plots.py", "misconfigured"),
    ("report/jsonfmt.py", "misconfigured"), ("report/html.py", "misconfigured"),
    ("scoring/memory.py", "probation"), ("scoring/judge.py", "probation"),
    ("scoring/transitions.py", "failed_recipients"), ("scoring/wording.py", "failed_recipients"),
}


def test_values_are_the_stored_keys() -> None:
    assert {k.value for k in Kind} == STORED
    assert Kind("helo_anomalies") is Kind.HELO_ANOMALIES


def test_a_stored_finding_reads_the_same_by_string_or_member() -> None:
    stored = {Kind.HELO_ANOMALIES: {"count": 3, "weight": 2.0, "examples": ["friend"]}}
    as_json = json.dumps(stored)
    assert as_json == '{"helo_anomalies": {"count": 3, "weight": 2.0, "examples": ["friend"]}}'
    loaded = json.loads(as_json)
    assert words.findings(loaded) == words.findings(stored)
    assert loaded[Kind.HELO_ANOMALIES]["count"] == 3
    assert f"{Kind.PROBATION}: new pattern" == "probation: new pattern"


def test_every_kind_has_words() -> None:
    assert set(WORDS) == set(Kind)
    assert set(Kind) >= VIRUS_KINDS and set(Kind) >= FACT_KINDS
    # A fact (nothing to refuse for) has no phrase of its own; every other kind has one.
    facts = {Kind.MISCONFIGURED, Kind.LIST_FAILURES_DISCOUNTED, Kind.FORWARDED_DISCOUNTED}
    assert {k for k, w in WORDS.items() if w.phrase is None} == facts


def test_decisions_and_report_read_the_one_table() -> None:
    assert decisions.phrase is phrase
    assert decisions.phrase(Kind.HELO_ANOMALIES) == "suspicious HELO"
    assert phrase("failed_recipients") == phrase(Kind.TOO_MANY_FAILURES) == (
        "too many delivery failures")
    f = {"count": 1, "examples": ["x@example.org"]}
    assert words.summary(Kind.SPAM_REJECTIONS, f) == sentence("spam_rejections", f) == (
        "1 recipient refused as spam by remote filters (e.g. x@example.org)")


def test_unknown_kinds_still_get_words() -> None:
    assert phrase("brand_new_heuristic") == DEFAULT_PHRASE
    assert phrase(Kind.MISCONFIGURED) == DEFAULT_PHRASE
    assert phrase("brand_new_heuristic", "") == ""
    assert sentence("brand_new_heuristic", {"count": 4, "examples": ["a", "b"]}) == (
        "brand new heuristic: 4 (e.g. a, b)")


def test_no_kind_spelled_as_a_string_outside_the_enum() -> None:
    values = {k.value for k in Kind}
    found = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "scoring/kinds.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in values:
                found.add((rel, node.value))
    assert found - OTHER_MEANINGS == set()
    assert OTHER_MEANINGS - found == set()  # the allow-list stays no longer than needed
