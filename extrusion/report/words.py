"""The engine's findings in plain words, for the abuse desk and the customer they call.

The engine stores each finding as `{kind: {count, weight, examples, first,
last, ...}}` on the sender (`extrusion.scoring.judge`). This module turns
that into a sentence per finding and picks what the report calls the
sender's category (spam, virus, misconfigured). Unknown kinds still get a
sentence, so a new heuristic never disappears from the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from extrusion.report.model import Category, Finding
from extrusion.report.times import iso_or_none
from extrusion.scoring.events import State

# Finding kinds as the engine names them (extrusion.scoring.judge).
FAILED = "failed_recipients"
TRIGGER = "too_many_failures"
SPAM_REJECTIONS = "spam_rejections"
VIRUS_REJECTIONS = "virus_rejections"
MISCONFIGURED = "misconfigured"
LISTS = "mailing_lists"
DISCOUNTED = "list_failures_discounted"
FORWARDED = "forwarded_discounted"
HELO = "helo_anomalies"
SPAM_VERDICTS = "spam_verdicts"
OWN_NETWORK = "own_network_inbound"
OWN_REFUSED = "own_network_refused"  # extrusion.scoring.logjudge
POSTSCREEN = "postscreen_verdicts"
REFUSED = "throttled_refusals"
DIRECT = "direct_to_mx"  # from sampled flow records (extrusion.flows)

VIRUS_KINDS = frozenset({HELO, VIRUS_REJECTIONS})
# Kinds that say something even when they added nothing to the score (the trigger fired
# on a score already above it; a rejection daemon; list failures set aside).
FACT_KINDS = frozenset({TRIGGER, MISCONFIGURED, DISCOUNTED, LISTS, FORWARDED})

# Bookkeeping fields of a stored finding that the evidence column need not repeat.
_BOOKKEEPING = ("weight",)
# Fields holding POSIX times, shown as ISO-8601.
_TIMES = ("first", "last")


def _examples(f: Mapping[str, Any], n: int = 3) -> str:
    ex = [str(e) for e in f.get("examples", [])][:n]
    return ", ".join(ex)


def _n(f: Mapping[str, Any], key: str = "count") -> int:
    value = f.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def summary(kind: str, f: Mapping[str, Any]) -> str:
    """One sentence saying what the finding means."""
    ex = _examples(f)
    eg = f" (e.g. {ex})" if ex else ""
    if kind == FAILED:
        return f"{_plural(_n(f), 'delivery', 'deliveries')} to distinct recipients failed{eg}"
    if kind == TRIGGER:
        return (
            f"more than {_n(f, 'trigger')} distinct recipients failed within the window "
            f"({_n(f, 'failed_recipients')} so far): mail to ancient or invented addresses"
        )
    if kind == SPAM_REJECTIONS:
        return f"{_plural(_n(f), 'recipient', 'recipients')} refused as spam by remote filters{eg}"
    if kind == VIRUS_REJECTIONS:
        return f"{_plural(_n(f), 'recipient', 'recipients')} refused as a virus by remote sites{eg}"
    if kind == HELO:
        return f"suspect HELO, as mass-mailing viruses say it: {ex}" if ex else "suspect HELO"
    if kind == LISTS:
        lists = _n(f, "lists")
        if lists > 1 and not f.get("weight") and _n(f, "waived"):
            return (f"a list server: {lists} mailing lists, its deliveries working and no more "
                    f"new list identities than a list server shows{eg}")
        if lists > 1:
            return f"{lists} different mailing lists from one sender{eg}"
        return f"a mailing list: most destinations work, its failures are discounted{eg}"
    if kind == DISCOUNTED:
        return f"{_plural(_n(f, 'discounted'), 'failure', 'failures')} of list posts discounted"
    if kind == FORWARDED:
        n = _n(f, "discounted")
        return (f"{_plural(n, 'spam verdict or refusal', 'spam verdicts or refusals')} of "
                f"forwarded mail discounted: the original sender's, not this host's{eg}")
    if kind == MISCONFIGURED:
        n = _n(f, "failed_auto_replies")
        return (
            f"a rejection daemon: {_plural(n, 'automatic reply', 'automatic replies')} sent "
            f"without <> failed{eg}"
        )
    if kind == SPAM_VERDICTS:
        return f"{_plural(_n(f), 'message', 'messages')} marked as spam by the spam filter"
    if kind == OWN_NETWORK:
        return f"seen from outside: one of our own customer ranges arriving at the MX{eg}"
    if kind == OWN_REFUSED:
        return (f"seen from outside: {_plural(_n(f), 'session', 'sessions')} of an own customer "
                f"address refused or judged spam at the MX{eg}")
    if kind == POSTSCREEN:
        return f"{_plural(_n(f), 'verdict', 'verdicts')} of postscreen against the client{eg}"
    if kind == REFUSED:
        return (
            f"kept sending while throttled: {_plural(_n(f), 'new recipient', 'new recipients')}"
            f" refused with 451 4.7.1{eg}"
        )
    if kind == DIRECT:
        return direct_summary(f)
    return f"{kind.replace('_', ' ')}: {_n(f)}{eg}"


def _noise(kind: str, f: Mapping[str, Any], score: float) -> bool:
    """A finding that added nothing, names nothing and is no fact in itself (a row like
    `failed_recipients +0.0 count=214 examples=` only makes a desk wonder)."""
    return score <= 0.0 and not f.get("examples") and kind not in FACT_KINDS


def direct_summary(f: Mapping[str, Any]) -> str:
    """Flow records: port 25 straight to the Internet, with the talk's measure of how
    steadily (hours active against the four-hour blocks it was active in)."""
    hours, blocks = _n(f, "hours_active"), _n(f, "blocks_active")
    hourly = f.get("hourly", [])
    peak = max((int(p) for _h, p in hourly), default=0) if isinstance(hourly, list) else 0
    srcs = ", ".join(str(s) for s in f.get("sources", [])[:3])
    return (
        f"sent mail directly to the Internet, bypassing the smarthost"
        f"{f' from {srcs}' if srcs else ''}: "
        f"{_plural(_n(f, 'destinations'), 'destination host', 'destination hosts')} in "
        f"{_plural(_n(f, 'networks'), 'network', 'networks')} (sampled), active "
        f"{_plural(hours, 'hour', 'hours')} of the {4 * blocks} in its "
        f"{_plural(blocks, 'four-hour block', 'four-hour blocks')}, "
        f"up to ~{peak:,} packets an hour{mx_summary(f)}"
    )


def mx_summary(f: Mapping[str, Any]) -> str:
    """MX mode: the annotation of its flows by the same address's mail at our MX."""
    if "mx_delivered" not in f or _n(f, "mx_delivered") < 0:
        return ""
    return (f"; mail from this address at our MX: {_n(f, 'mx_delivered')} delivered, "
            f"{_n(f, 'mx_refused')} refused/spam")


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
        out.append(Finding(str(kind), summary(str(kind), f), score, evidence))
    out.sort(key=lambda x: (-x.score, x.kind))
    return tuple(out)


def seen_from_outside(stored: object) -> bool:
    """An own customer's address seen arriving at the MX (mx mode): shown in the report and
    notified even at `watch`, where nothing else is."""
    return isinstance(stored, Mapping) and isinstance(stored.get(OWN_NETWORK), Mapping)


def is_rejection_daemon(stored: Mapping[str, Any]) -> bool:
    f = stored.get(MISCONFIGURED)
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
        return tuple(f.summary for f in found if f.kind == MISCONFIGURED)
    out = [f.summary for f in found if f.weighs or f.kind in (TRIGGER, MISCONFIGURED)]
    if not out and changes:
        # Nothing weighs now (the evidence decayed): say why it was flagged.
        out.append(changes[-1])
    return tuple(out)
