"""Sort one recipient's delivery outcome into a class the heuristics can count.

Spam goes to ancient and invented addresses and is refused by remote
filters, so the class of a failure matters as much as its number: an
unknown user, a domain that does not exist, a refusal as spam or as a
virus. The MTA's status and enhanced status code (RFC 3463) say a lot, but
remote servers are sloppy with codes (Orange answers "5.1.1" for a full
mailbox, many servers answer 5.7.1 for everything), so the reply text is
read first and the code only decides when the text says nothing we know.

`classify()` is pure: no I/O, no clock, never raises on any text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from extrusion.scoring.events import Status


class OutcomeClass(StrEnum):
    DELIVERED = "delivered"
    UNKNOWN_USER = "unknown_user"
    NO_SUCH_DOMAIN = "no_such_domain"
    SPAM_POLICY = "spam_policy"
    VIRUS = "virus"
    MAILBOX_FULL = "mailbox_full"
    OTHER_PERMANENT = "other_permanent"
    TEMPORARY = "temporary"


# A temporary failure is not a failure by itself: the MTA retries, and only a
# later bounce or expiry (which arrives as its own outcome) counts.
_NOT_FAILURES = frozenset({OutcomeClass.DELIVERED, OutcomeClass.TEMPORARY})


def is_failure(cls: OutcomeClass) -> bool:
    """True for the permanent failures, the ones the failure heuristics count."""
    return cls not in _NOT_FAILURES


# Replies longer than this are cut before matching: every pattern we know sits
# near the start, and a bound keeps a hostile 1 MB "reply" as cheap as a short one.
MAX_REPLY_CHARS = 2048

# The first digit of a basic or enhanced code that marks a transient failure.
CLASS_TRANSIENT = "4"

# An enhanced status code: class.subject.detail, and a basic reply code. Either
# must stand alone, not be part of an IP address or a longer dotted number
# (Yahoo's "4.16.55.1" is a reference, not a status); `_standalone()` checks the
# character before, which is much cheaper than a look-behind in the pattern.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_BASIC = re.compile(r"([245])\d\d(?=[ -]|$)")
_NUMERIC = frozenset("0123456789.")

# Postfix wraps a remote reply as "host NAME[ADDR] said: ..."; its own messages
# name hosts as "NAME[ADDR]:PORT". Host names say nothing about the refusal and
# can mislead ("connect to spamfilter.example.net[192.0.2.1]:25: Connection
# timed out" is not a spam refusal), so they are removed before matching.
_HOST_SAID = re.compile(r"^\s*host\s+\S+\s+said:\s*", re.IGNORECASE)
_BRACKETED_ADDR = re.compile(r"\[[0-9a-fA-F.:]*\](?::\d+)?")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
# Multi-line replies repeat "550-5.1.1 " on every line; those prefixes would
# split phrases ("likely unsolicited 550-5.7.1 mail"). The first one stays
# (it is not preceded by white space): a rule may need to know the text came
# with a reply code.
_CONTINUATION = re.compile(
    r"\s[245]\d\d(?:-(?:[245]\.\d{1,3}\.\d{1,3}\s)?| [245]\.\d{1,3}\.\d{1,3}\s)"
)
CODE_SEARCH_CHARS = 200  # reply codes sit at the start of a reply


@dataclass(frozen=True, slots=True)
class Phrase:
    """Text that marks a class: `anchor` must occur, and `regex` (if any) must match.

    The anchor is a plain substring, so most phrases cost one `in` test and
    the regular expression runs only on the few replies that contain it.
    """

    anchor: str
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of the table: the first rule whose text or code matches wins.

    `phrases` are looked for in the normalised (lower-case, single-spaced)
    reply; `code` is matched against "subject.detail" of the enhanced status
    code, so "1.1" covers both 5.1.1 and a final 4.1.1.
    """

    outcome: OutcomeClass
    phrases: tuple[Phrase, ...] = ()
    code: re.Pattern[str] | None = None


def _re(anchor: str, pattern: str) -> Phrase:
    return Phrase(anchor, re.compile(pattern))


def _text(outcome: OutcomeClass, *phrases: str | Phrase) -> Rule:
    return Rule(outcome, tuple(p if isinstance(p, Phrase) else Phrase(p) for p in phrases))


def _code(outcome: OutcomeClass, pattern: str) -> Rule:
    return Rule(outcome, code=re.compile(pattern))


_C = OutcomeClass
_GONE = (
    r"(?:unknown|not found|does not exist|doesn'?t exist|no longer (?:valid|active|exists)"
    r"|is disabled|is inactive|has been disabled|deactivated)"
)

# Order matters. Specific phrases first, then content (virus before spam, so
# "blocked because its content presents a potential security issue" is a
# virus), then the mailbox and address classes, and the bare status code last.
# Plain strings are substrings of the lower-case reply; _re(anchor, regex)
# where a word boundary or a choice matters.
RULES: tuple[Rule, ...] = (
    # --- phrases that would otherwise fall into a broader class below --------------------
    # Lotus Domino: "User x not listed in Domino Directory" is an unknown user, not a listing.
    _text(_C.UNKNOWN_USER, _re("directory", r"not listed in (?:the )?(?:domino )?directory")),
    # Microsoft 365: "550 5.4.1 Recipient address rejected: Access denied" means no such user.
    _text(_C.UNKNOWN_USER, "recipient address rejected: access denied"),
    # La Poste: "Le compte du destinataire est bloque. The recipient account isblocked."
    _text(_C.UNKNOWN_USER, "compte du destinataire est bloqu", "recipient account isblocked",
          "recipient account is blocked"),
    # Exim answering for its own domains: "550 Unrouteable address" (no such local user).
    # Without a reply code it is Exim's own routing failure, a domain that does not resolve.
    _text(
        _C.UNKNOWN_USER,
        _re("unrouteable", r"\b[45]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?unrouteable address"),
    ),
    # --- virus and malware --------------------------------------------------------------------
    _text(
        _C.VIRUS,
        "virus",
        "malware",
        "infected",
        "trojan",
        _re("worm", r"\bworms?\b"),
        "potential security issue",
        "illegal attachment",
        "potentially executable",
        _re("content", r"(?:harmful|unsafe|malicious) content"),
        _re("attachment", r"(?:harmful|unsafe|malicious) attachment"),
    ),
    # --- refused as spam or by policy ----------------------------------------------------------
    _text(
        _C.SPAM_POLICY,
        # "spam" as a word, not inside a host name such as spamfilter.example.net
        _re("spam", r"\bspam(?:s|my|ming|mer|mers)?\b(?!\.\w)"),
        "spamhaus",
        "spamcop",
        "spamassassin",
        "abuseat.org",
        "barracudacentral",
        "sorbs.net",
        "uceprotect",
        "dnsbl",
        _re("rbl", r"\brbl\b"),
        "unsolicited",
        "phish",
        _re("blocked", r"\bblocked\b"),
        _re("block", r"\bblock ?list"),
        _re("black", r"\bblack ?list"),
        _re("listed", r"\b(?:black|block|deny|)listed\b"),
        "reputation",
        _re("polic", r"\bpolic(?:y|ies)\b"),
        _re("rate", r"\brate[- ]limit"),
        "permanently deferred",  # Yahoo TSS09/TSS11
        "banned",
        _re("bloqu", r"\bbloqu[eé]"),  # Orange: "Adresse IP source bloquee pour incident de spam"
        "dmarc",
        _re("spf", r"\bspf\b"),
        "helo command rejected",
        "client host rejected",
        "not authorized to send",
        "reverse dns",
        _re("rdns", r"\brdns\b"),
        "ptr record",
    ),
    # --- mailbox full ---------------------------------------------------------------------------
    _text(
        _C.MAILBOX_FULL,
        _re("quota", r"over ?(?:the )?(?:allowed |disk |storage )?quota"),
        _re("quota", r"quota (?:exceeded|violation|limit)"),
        "disk quota",
        _re("exceed", r"exceed(?:s|ed|ing)? (?:its |their |the |his |her )?(?:storage|quota|disk)"),
        _re("full", r"mailbox (?:is |was )?full"),
        "full mailbox",
        _re("full", r"mail ?folder is full"),
        "out of storage",
        _re("storage", r"storage (?:space|allocation)"),
        "exhausted allowed storage",
        _re("too many messages", r"too many messages (?:on|in)"),
        "mailbox size limit",
        _re("space", r"not enough (?:storage )?space"),
        "boite du destinataire pleine",  # Orange: "552 5.1.1 Boite du destinataire pleine"
        "speichervolumen",  # WEB.DE: "Benutzer hat das Speichervolumen ueberschritten"
    ),
    # --- problems with the sender or the route, not with the recipient --------------------------
    # Before the domain rules: "Sender address rejected: Domain not found" is the
    # sender's domain, the recipient's may be fine.
    _text(
        _C.OTHER_PERMANENT,
        "sender address rejected",
        _re("sender", r"sender (?:domain|address) (?:is )?invalid"),
    ),
    _text(
        _C.OTHER_PERMANENT,
        _re("relay", r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)"),
        _re("relay", r"(?:not permitted|unable) to relay"),
        "loops back to myself",
        _re("loop", r"mail (?:forwarding )?loop"),
    ),
    # --- the recipient's domain does not exist ---------------------------------------------------
    _text(
        _C.NO_SUCH_DOMAIN,
        "host or domain name not found",
        "name service error",
        _re("domain", r"domain (?:name )?not found"),
        "no such domain",
        _re("domain", r"domain (?:does not|doesn'?t) exist"),
        _re("domain", r"unknown (?:mail )?domain"),
        _re("domain", r"domain (?:is )?unknown"),
        "does not accept mail",  # null MX (RFC 7505)
        "unrouteable address",  # Exim's own routing failure (coded replies matched above)
        _re("mx", r"\bno mx\b"),
    ),
    # --- the recipient does not exist (ancient and invented addresses) ---------------------------
    _text(
        _C.UNKNOWN_USER,
        "user unknown",
        _re("unknown", r"unknown (?:user|recipient|local[- ]?part|mailbox|address|alias)"),
        _re("no such", r"no such (?:user|mailbox|recipient|account|address|person|local user)"),
        # "<noun> ... <what is wrong with it>", within one clause
        *(
            _re(noun, rf"{noun}\b[^.;:]{{0,40}}?{_GONE}")
            for noun in ("user", "recipient", "addressee", "mailbox", "account", "address")
        ),
        # Yahoo: "This user doesn't have a yahoo.com account"
        _re("account", r"(?:does not|doesn'?t) have an? [\w.-]+ account"),
        "no mailbox here by that name",
        "is no longer valid",  # Yahoo: "dd jo@yahoo.com is no longer valid"
        _re("mailbox", r"mailbox (?:unavailable|not found|does not exist|disabled|inactive)"),
        _re("found", r"recipient ?not ?found"),
        "not our customer",
        _re("invalid", r"invalid (?:recipient|mailbox|address|user)"),
        _re("inactive", r"inactive (?:email )?(?:address|account|mailbox)"),
        _re("exist", r"(?:does not|doesn'?t) exist"),
        _re("rejected", r"recipient (?:address )?rejected"),
        "destinataire invalide",  # Orange: "Adresse d au moins un destinataire invalide"
        "benutzer nicht bekannt",
    ),
    # --- no text we know: the enhanced status code decides --------------------------------------
    _code(_C.UNKNOWN_USER, r"1\.(?:1|3|6)|2\.1"),  # bad mailbox, bad syntax, moved, disabled
    _code(_C.NO_SUCH_DOMAIN, r"1\.2|1\.10|4\.4"),  # bad domain, null MX, unable to route
    _code(_C.MAILBOX_FULL, r"2\.2"),
    _code(_C.SPAM_POLICY, r"7\.\d{1,3}"),
    _code(_C.OTHER_PERMANENT, r"1\.(?:7|8)"),  # the sender's address or domain
)


# RULES flattened into one sequence of checks in the same order: (anchor,
# regex, outcome) for a phrase, (None, code regex, outcome) for a code. One flat
# loop with no calls per phrase keeps classify() cheap on the engine's event path.
_CHECKS: tuple[tuple[str | None, re.Pattern[str] | None, OutcomeClass], ...] = tuple(
    check
    for rule in RULES
    for check in (
        *((phrase.anchor, phrase.regex, rule.outcome) for phrase in rule.phrases),
        *(((None, rule.code, rule.outcome),) if rule.code is not None else ()),
    )
)


def _parse_dsn(dsn: str) -> tuple[str, str]:
    """(class digit, "subject.detail") of an enhanced status code, or ("", "")."""
    m = _ENHANCED.fullmatch(dsn.strip()) if dsn else None
    if m is None:
        return "", ""
    return m.group(1), f"{int(m.group(2))}.{int(m.group(3))}"


def _standalone(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The first match of `pattern` in `text` not glued to a digit or dot before it."""
    for m in pattern.finditer(text):
        start = m.start()
        if start == 0 or text[start - 1] not in _NUMERIC:
            return m
    return None


def _reply_codes(reply: str) -> tuple[str, str, str]:
    """(basic code, enhanced class digit, "subject.detail") found in a reply, "" where absent."""
    head = reply[:CODE_SEARCH_CHARS]
    basic = _standalone(_BASIC, head)
    enhanced = _standalone(_ENHANCED, head)
    if enhanced is None:
        return (basic.group(0) if basic else ""), "", ""
    subject_detail = f"{int(enhanced.group(2))}.{int(enhanced.group(3))}"
    return (basic.group(0) if basic else ""), enhanced.group(1), subject_detail


def _normalise(reply: str) -> str:
    """Lower-case, single-spaced text with host names and continuation prefixes removed."""
    text = _drop_host_names(_HOST_SAID.sub("", reply))
    text = _CONTINUATION.sub(" ", text)
    return " ".join(text.split()).lower()


def _drop_host_names(text: str) -> str:
    """Remove "NAME[ADDR]:PORT" tokens, found from their cheap-to-find "[ADDR]" part."""
    if "[" not in text:
        return text
    pieces: list[str] = []
    done = 0
    for m in _BRACKETED_ADDR.finditer(text):
        start = m.start()
        while start > done and text[start - 1] in _HOST_CHARS:
            start -= 1
        if start == m.start():
            continue  # "Client host [192.0.2.1]": an address alone names no host
        pieces.append(text[done:start])
        pieces.append(" ")
        done = m.end()
    pieces.append(text[done:])
    return "".join(pieces)


def _is_final(status: Status | str) -> bool:
    return status in (Status.BOUNCED, Status.EXPIRED, Status.REJECTED)


# Asked first for every outcome: a member read from its enum class is a lookup each time.
_SENT, _DEFERRED = Status.SENT, Status.DEFERRED
_DELIVERED, _TEMPORARY = OutcomeClass.DELIVERED, OutcomeClass.TEMPORARY


def classify(status: Status, dsn: str, reply: str) -> OutcomeClass:
    """The class of one recipient's outcome from the MTA's status, DSN code and reply text.

    A `sent` status is DELIVERED whatever the text says; `deferred` is
    TEMPORARY (it counts only if it later bounces or expires); a `rejected`
    with a 4xx code is TEMPORARY too (greylisting, the client retries).
    Anything final is looked up in `RULES`; what no rule knows is
    OTHER_PERMANENT. Never raises.
    """
    if status == _SENT:
        return _DELIVERED
    if status == _DEFERRED or not _is_final(status):
        return _TEMPORARY
    if type(dsn) is str and type(reply) is str:  # hashable, and any str subclass uncached
        return _final_cached(status, dsn, reply)
    return _final(status, dsn, reply)


def _final(status: Status, dsn: str, reply: str) -> OutcomeClass:
    """`classify()` of a final status: the rules read the reply (some 50 us)."""
    if not isinstance(dsn, str):
        dsn = ""
    if not isinstance(reply, str):
        reply = ""
    reply = reply[:MAX_REPLY_CHARS]

    dsn_class, code = _parse_dsn(dsn)
    basic, reply_class, reply_code = _reply_codes(_HOST_SAID.sub("", reply))
    # Postfix logs dsn=5.0.0 when the remote gave no enhanced code; a specific
    # code in the text is better than that.
    if not code or code == "0.0":
        code = reply_code or code
        dsn_class = dsn_class or reply_class
    first_digit = dsn_class or (basic[:1] if basic else "")

    if status == Status.REJECTED and first_digit == CLASS_TRANSIENT:
        return OutcomeClass.TEMPORARY

    text = _normalise(reply)
    for anchor, regex, outcome in _CHECKS:
        if anchor is None:  # a status-code rule
            if code and regex is not None and regex.fullmatch(code):
                return outcome
        elif anchor in text and (regex is None or regex.search(text) is not None):
            return outcome
    return OutcomeClass.OTHER_PERMANENT


# A final outcome's class by its (status, dsn, reply): remote servers answer the same
# text again and again (a dead domain's "Name service error for name=..."; a quarter
# of the bounces of benchmarks' two-day log), and `_final()` is pure.
_final_cached = lru_cache(maxsize=4096)(_final)
