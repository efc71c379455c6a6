"""The words for each finding kind, in one table: the short phrase clients, the audit
trail and notifications read ("extrusion: sending refused (too many delivery
failures)"), and the sentence the report gives the abuse desk.

The report (`extrusion.report.words`), the engine's decisions
(`extrusion.scoring.decisions`) and `extrusion senders` all read this table. A kind
without an entry (a finding stored by a newer version) still gets words: the
default phrase, and a sentence made of its name and count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from extrusion.scoring.kinds import Kind

DEFAULT_PHRASE = "suspicious sending pattern"

Finding = Mapping[str, Any]  # one stored finding: {count, weight, examples, first, last, ...}


@dataclass(frozen=True, slots=True)
class Words:
    # The reason shown to clients and in the audit trail; None: a fact, no reason to refuse.
    phrase: str | None
    # The report's sentence for the stored finding; None: its name and count.
    sentence: Callable[[Finding], str] | None = None


def _examples(f: Finding, n: int = 3) -> str:
    ex = [str(e) for e in f.get("examples", [])][:n]
    return ", ".join(ex)


def _eg(f: Finding) -> str:
    ex = _examples(f)
    return f" (e.g. {ex})" if ex else ""


def _n(f: Finding, key: str = "count") -> int:
    value = f.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _lists(f: Finding) -> str:
    lists, eg = _n(f, "lists"), _eg(f)
    if lists > 1 and not f.get("weight") and _n(f, "waived"):
        return (f"a list server: {lists} mailing lists, its deliveries working and no more "
                f"new list identities than a list server shows{eg}")
    if lists > 1:
        return f"{lists} different mailing lists from one sender{eg}"
    return f"a mailing list: most destinations work, its failures are discounted{eg}"


def _helo(f: Finding) -> str:
    ex = _examples(f)
    return f"suspect HELO, as mass-mailing viruses say it: {ex}" if ex else "suspect HELO"


def direct_summary(f: Finding) -> str:
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


def mx_summary(f: Finding) -> str:
    """MX mode: the annotation of its flows by the same address's mail at our MX."""
    if "mx_delivered" not in f or _n(f, "mx_delivered") < 0:
        return ""
    return (f"; mail from this address at our MX: {_n(f, 'mx_delivered')} delivered, "
            f"{_n(f, 'mx_refused')} refused/spam")


FAILURES = "too many delivery failures"

WORDS: dict[Kind, Words] = {
    Kind.FAILED_RECIPIENTS: Words(FAILURES, lambda f: (
        f"{_plural(_n(f), 'delivery', 'deliveries')} to distinct recipients failed{_eg(f)}")),
    Kind.TOO_MANY_FAILURES: Words(FAILURES, lambda f: (
        f"more than {_n(f, 'trigger')} distinct recipients failed within the window "
        f"({_n(f, 'failed_recipients')} so far): mail to ancient or invented addresses")),
    Kind.SPAM_REJECTIONS: Words("mail refused as spam by remote sites", lambda f: (
        f"{_plural(_n(f), 'recipient', 'recipients')} refused as spam by remote filters"
        f"{_eg(f)}")),
    Kind.VIRUS_REJECTIONS: Words("mail refused as a virus by remote sites", lambda f: (
        f"{_plural(_n(f), 'recipient', 'recipients')} refused as a virus by remote sites"
        f"{_eg(f)}")),
    Kind.THROTTLED_REFUSALS: Words("kept sending while rate limited", lambda f: (
        f"kept sending while throttled: {_plural(_n(f), 'new recipient', 'new recipients')}"
        f" refused with 451 4.7.1{_eg(f)}")),
    Kind.MISCONFIGURED: Words(None, lambda f: (
        f"a rejection daemon: "
        f"{_plural(_n(f, 'failed_auto_replies'), 'automatic reply', 'automatic replies')} "
        f"sent without <> failed{_eg(f)}")),
    Kind.MAILING_LISTS: Words("too many mailing lists", _lists),
    Kind.LIST_FAILURES_DISCOUNTED: Words(None, lambda f: (
        f"{_plural(_n(f, 'discounted'), 'failure', 'failures')} of list posts discounted")),
    Kind.FORWARDED_DISCOUNTED: Words(None, lambda f: (
        f"{_plural(_n(f, 'discounted'), 'spam verdict or refusal', 'spam verdicts or refusals')}"
        f" of forwarded mail discounted: the original sender's, not this host's{_eg(f)}")),
    Kind.HELO_ANOMALIES: Words("suspicious HELO", _helo),
    Kind.FREEMAIL_UNAUTHENTICATED: Words("freemail sender without authentication"),
    Kind.UNAUTHENTICATED_FROM_SASL_ADDRESS: Words(
        "unauthenticated mail from an authenticating customer"),
    Kind.ENVELOPE_DOMAINS: Words("many sender domains"),
    Kind.RECIPIENT_SPREAD: Words("recipients spread over many domains"),
    Kind.PROBATION: Words("new sending pattern on probation"),
    Kind.SPAM_VERDICTS: Words("mail judged as spam", lambda f: (
        f"{_plural(_n(f), 'message', 'messages')} marked as spam by the spam filter")),
    Kind.OWN_NETWORK_INBOUND: Words("own customer range seen from outside", lambda f: (
        f"seen from outside: one of our own customer ranges arriving at the MX{_eg(f)}")),
    Kind.OWN_NETWORK_REFUSED: Words(
        "own customer range refused or judged spam from outside", lambda f: (
            f"seen from outside: {_plural(_n(f), 'session', 'sessions')} of an own customer "
            f"address refused or judged spam at the MX{_eg(f)}")),
    Kind.POSTSCREEN_VERDICTS: Words("refused by postscreen as a bot", lambda f: (
        f"{_plural(_n(f), 'verdict', 'verdicts')} of postscreen against the client{_eg(f)}")),
    Kind.DIRECT_TO_MX: Words(
        "mail sent directly to the Internet, bypassing the smarthost", direct_summary),
}


# By the kind's text: every policy answer asks for a phrase, most often for "" (no
# finding), which `Kind("")` answered by raising and catching a ValueError.
_BY_TEXT: dict[str, Words] = {kind.value: words for kind, words in WORDS.items()}


def _words(kind: str) -> Words | None:
    return _BY_TEXT.get(kind)  # None for a kind this version does not know


def phrase(kind: str, default: str = DEFAULT_PHRASE) -> str:
    """The short reason for a finding of `kind`, `default` for a kind without one."""
    w = _words(kind)
    return w.phrase if w is not None and w.phrase is not None else default


def sentence(kind: str, f: Finding) -> str:
    """One sentence saying what the stored finding `f` means."""
    w = _words(kind)
    if w is not None and w.sentence is not None:
        return w.sentence(f)
    return f"{kind.replace('_', ' ')}: {_n(f)}{_eg(f)}"
