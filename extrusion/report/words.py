"""The engine's findings in plain words, for the abuse desk and the customer they call.

The engine stores each finding as `{kind: {count, weight, examples, first,
last, ...}}` on the sender (`extrusion.scoring.judge`). This module turns
that into the report's findings, each with its sentence from the one table of
words (`extrusion.scoring.wording`), and picks what the report calls the
sender's category (spam, virus, misconfigured). Unknown kinds still get a
sentence, so a new heuristic never disappears from the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from extrusion.report.model import Category, Finding
from extrusion.report.times import iso_or_none
from extrusion.scoring.events import State
from extrusion.scoring.kinds import FACT_KINDS, VIRUS_KINDS, Kind
from extrusion.scoring.wording import direct_summary as direct_summary  # for the flows' tests
from extrusion.scoring.wording import sentence

summary = sentence  # the report's name for a finding's sentence

# Bookkeeping fields of a stored finding that the evidence column need not repeat.
_BOOKKEEPING = ("weight",)
# Fields holding POSIX times, shown as ISO-8601.
_TIMES = ("first", "last")


def _noise(kind: str, f: Mapping[str, Any], score: float) -> bool:
    """A finding that added nothing, names nothing and is no fact in itself (a row like
    `failed_recipients +0.0 count=214 examples=` only makes a desk wonder)."""
    return score <= 0.0 and not f.get("examples") and kind not in FACT_KINDS


def findings(stored: Mapping[str, Any]) -> tuple[Finding, ...]:
    """The stored findings as report findings, heaviest first; noise left out."""
    out = []
    for kind, f in stored.items():
        if not isinstance(f, Mapping):
            f = {"value": f}
        weight = f.get("weight", 0.0)
        score = float(weight) if isinstance(weight, int | float) else 0.0
        if _noise(str(kind), f, score):
            continue
        evidence = {
            k: iso_or_none(v) if k in _TIMES and isinstance(v, int | float) else v
            for k, v in f.items()
            if k not in _BOOKKEEPING
        }
        out.append(Finding(str(kind), sentence(str(kind), f), score, evidence))
    out.sort(key=lambda x: (-x.score, x.kind))
    return tuple(out)


def seen_from_outside(stored: object) -> bool:
    """An own customer's address seen arriving at the MX (mx mode): shown in the report and
    notified even at `watch`, where nothing else is."""
    return isinstance(stored, Mapping) and isinstance(stored.get(Kind.OWN_NETWORK_INBOUND),
                                                      Mapping)


def is_rejection_daemon(stored: Mapping[str, Any]) -> bool:
    f = stored.get(Kind.MISCONFIGURED)
    return isinstance(f, Mapping) and bool(f.get("rejection_daemon"))


def category(stored: Mapping[str, Any], flagged: bool, pinned: bool = False) -> Category:
    """Virus evidence wins (a worm fails a lot too); a rejection daemon that nothing
    else flagged is misconfigured; a pinned sender without weighty evidence is the
    operator's decision, not spam; everything else flagged is spam."""
    weighty = {k for k, f in stored.items() if isinstance(f, Mapping) and f.get("weight", 0)}
    if weighty & VIRUS_KINDS:
        return Category.VIRUS
    if not flagged and is_rejection_daemon(stored):
        return Category.MISCONFIGURED
    if pinned and not weighty:
        return Category.OPERATOR
    return Category.SPAM


def reasons(found: tuple[Finding, ...], state: State,
            changes: Sequence[str] = ()) -> tuple[str, ...]:
    """Why the sender is in its state: what weighed, else the reason of the latest
    flagging state change (`changes`, oldest first). A sender in `ok` has none but the
    rejection daemon it is listed for: one bounce is not "too many delivery failures",
    and its worst state and audit trail say what it did before. An operator's pin is an
    action, shown apart (`Pin`)."""
    if state is State.OK:
        return tuple(f.summary for f in found if f.kind == Kind.MISCONFIGURED)
    facts = (Kind.TOO_MANY_FAILURES, Kind.MISCONFIGURED)
    out = [f.summary for f in found if f.weighs or f.kind in facts]
    if not out and changes:
        # Nothing weighs now (the evidence decayed): say why it was flagged.
        out.append(changes[-1])
    return tuple(out)
