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

# An enhanced status code: class.subject.detail, not part of an IP address or a
# longer dotted number (Yahoo's "4.16.55.1" is a reference, not a status).
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_BASIC = re.compile(r"(?<![\d.])([245])\d\d(?=[ -]|$)")

# Postfix wraps a remote reply as "host NAME[ADDR] said: ..."; its own messages
# name hosts as "NAME[ADDR]:PORT". Host names say nothing about the refusal and
# can mislead ("connect to spamfilter.example.net[192.0.2.1]:25: Connection
# timed out" is not a spam refusal), so they are removed before matching.
_HOST_SAID = re.compile(r"^\s*host\s+\S+\s+said:\s*", re.IGNORECASE)
_HOST_ADDR = re.compile(r"[\w.-]+\[[0-9a-f.:]*\](?::\d+)?", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of the table: the first rule whose text or code matches wins.

    `text` is searched in the normalised (lower-case, single-spaced) reply;
    `code` is matched against "subject.detail" of the enhanced status code,
    so "1.1" covers both 5.1.1 and a final 4.1.1.
    """

    outcome: OutcomeClass
    text: re.Pattern[str] | None = None
    code: re.Pattern[str] | None = None

    def matches(self, reply: str, code: str) -> bool:
        if self.text is not None and self.text.search(reply):
            return True
        return self.code is not None and bool(code) and self.code.fullmatch(code) is not None


def _text(outcome: OutcomeClass, *alternatives: str) -> Rule:
    return Rule(outcome, text=re.compile("|".join(f"(?:{a})" for a in alternatives)))


def _code(outcome: OutcomeClass, pattern: str) -> Rule:
    return Rule(outcome, code=re.compile(pattern))


_C = OutcomeClass

# Order matters. Specific phrases first, then content (virus before spam, so
# "blocked because its content presents a potential security issue" is a
# virus), then the mailbox and address classes, and the bare status code last.
RULES: tuple[Rule, ...] = (
    # --- phrases that would otherwise fall into a broader class below --------------------
    # Lotus Domino: "User x not listed in Domino Directory" is an unknown user, not a listing.
    _text(_C.UNKNOWN_USER, r"not listed in (?:the )?(?:domino )?(?:public )?directory"),
    # Microsoft 365: "550 5.4.1 Recipient address rejected: Access denied" means no such user.
    _text(_C.UNKNOWN_USER, r"recipient address rejected: access denied"),
    # La Poste: "Le compte du destinataire est bloque. The recipient account isblocked."
    _text(_C.UNKNOWN_USER, r"compte du destinataire est bloqu", r"recipient account is ?blocked"),
    # Exim answering for its own domains: "550 Unrouteable address" (no such local user).
    # Without a reply code it is Exim's own routing failure, a domain that does not resolve.
    _text(_C.UNKNOWN_USER, r"\b[45]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?unrouteable address"),
    # --- virus and malware --------------------------------------------------------------------
    _text(
        _C.VIRUS,
        r"\bvirus(?:es)?\b",
        r"\bmalware\b",
        r"\binfected\b",
        r"\btrojan\b",
        r"\bworm\b",
        r"potential security issue",
        r"illegal attachment",
        r"potentially executable",
        r"(?:harmful|unsafe|malicious) (?:content|attachment|code)",
    ),
    # --- refused as spam or by policy ----------------------------------------------------------
    _text(
        _C.SPAM_POLICY,
        # "spam" as a word, not inside a host name such as spamfilter.example.net
        r"\bspam(?:s|my|ming|mer|mers)?\b(?!\.\w)",
        r"spamhaus|spamcop|spamassassin|abuseat\.org|barracudacentral|sorbs\.net|uceprotect",
        r"\bunsolicited\b",
        r"\bphish",
        r"\bblocked\b",
        r"\bblock ?list",
        r"\bblack ?list",
        r"\b(?:black|block|deny|)listed\b",
        r"\b(?:rbl|dnsbl)\b",
        r"\breputation\b",
        r"\bpolicy\b",
        r"\bpolicies\b",
        r"\brate[- ]limit",
        r"permanently deferred",  # Yahoo TSS09/TSS11
        r"\bbanned\b",
        r"\bbloqu[eé]",  # Orange / La Poste: "Adresse IP source bloquee pour incident de spam"
        r"\bdmarc\b",
        r"\bspf\b",
        r"helo command rejected",
        r"client host rejected",
        r"not authorized to send",
        r"reverse dns|\brdns\b|\bptr record",
    ),
    # --- mailbox full ---------------------------------------------------------------------------
    _text(
        _C.MAILBOX_FULL,
        r"over ?(?:the )?(?:allowed |disk |storage )?quota",
        r"quota (?:exceeded|violation|limit)",
        r"exceed(?:s|ed|ing)? (?:its |their |the |his |her )?(?:storage|quota|disk|mailbox)",
        r"mailbox (?:is |was )?full",
        r"full mailbox",
        r"mail ?folder is full",
        r"out of storage",
        r"storage (?:space|allocation)",
        r"exhausted allowed storage",
        r"too many messages (?:on|in)",
        r"mailbox size limit",
        r"disk quota",
        r"not enough (?:storage )?space",
        r"boite du destinataire pleine",  # Orange: "552 5.1.1 Boite du destinataire pleine"
        r"speichervolumen",  # WEB.DE: "Benutzer hat das Speichervolumen ueberschritten"
    ),
    # --- problems with the sender or the route, not with the recipient --------------------------
    # Before the domain rules: "Sender address rejected: Domain not found" is the
    # sender's domain, the recipient's may be fine.
    _text(
        _C.OTHER_PERMANENT,
        r"sender address rejected",
        r"sender (?:domain|address) (?:is )?invalid",
    ),
    _text(
        _C.OTHER_PERMANENT,
        r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)",
        r"(?:not permitted|unable) to relay",
        r"loops back to myself",
        r"mail (?:forwarding )?loop",
    ),
    # --- the recipient's domain does not exist ---------------------------------------------------
    _text(
        _C.NO_SUCH_DOMAIN,
        r"host or domain name not found",
        r"name service error",
        r"domain (?:name )?not found",
        r"no such domain",
        r"domain (?:does not|doesn'?t) exist",
        r"unknown (?:mail )?domain",
        r"domain (?:is )?unknown",
        r"does not accept mail",  # null MX (RFC 7505)
        r"unrouteable address",  # Exim's own routing failure (coded replies matched above)
        r"\bno mx\b",
    ),
    # --- the recipient does not exist (ancient and invented addresses) ---------------------------
    _text(
        _C.UNKNOWN_USER,
        r"user unknown",
        r"unknown (?:user|recipient|local[- ]?part|mailbox|address|alias)",
        r"no such (?:user|mailbox|recipient|account|address|person|local user)",
        r"(?:user|recipient|addressee|mailbox|account|address)\b[^.;:]{0,40}?"
        r"(?:unknown|not found|does not exist|doesn'?t exist|no longer (?:valid|active|exists)"
        r"|is disabled|is inactive|has been disabled|deactivated)",
        # Yahoo: "This user doesn't have a yahoo.com account"
        r"(?:does not|doesn'?t) have an? [\w.-]+ account",
        r"no mailbox here by that name",
        r"is no longer valid",  # Yahoo: "dd jo@yahoo.com is no longer valid"
        r"mailbox (?:unavailable|not found|does not exist|disabled|inactive)",
        r"recipient ?not ?found",
        r"not our customer",
        r"invalid (?:recipient|mailbox|address|user)",
        r"inactive (?:email )?(?:address|account|mailbox)",
        r"(?:does not|doesn'?t) exist",
        r"recipient (?:address )?rejected",
        r"destinataire invalide",  # Orange: "Adresse d au moins un destinataire invalide"
        r"benutzer nicht bekannt",
    ),
    # --- no text we know: the enhanced status code decides --------------------------------------
    _code(_C.UNKNOWN_USER, r"1\.(?:1|3|6)|2\.1"),  # bad mailbox, bad syntax, moved, disabled
    _code(_C.NO_SUCH_DOMAIN, r"1\.2|1\.10|4\.4"),  # bad domain, null MX, unable to route
    _code(_C.MAILBOX_FULL, r"2\.2"),
    _code(_C.SPAM_POLICY, r"7\.\d{1,3}"),
    _code(_C.OTHER_PERMANENT, r"1\.(?:7|8)"),  # the sender's address or domain
)


def _parse_dsn(dsn: str) -> tuple[str, str]:
    """(class digit, "subject.detail") of an enhanced status code, or ("", "")."""
    m = _ENHANCED.fullmatch(dsn.strip()) if dsn else None
    if m is None:
        return "", ""
    return m.group(1), f"{int(m.group(2))}.{int(m.group(3))}"


def _reply_codes(reply: str) -> tuple[str, str, str]:
    """(basic code, enhanced class digit, "subject.detail") found in a reply, "" where absent."""
    basic = _BASIC.search(reply)
    enhanced = _ENHANCED.search(reply)
    if enhanced is None:
        return (basic.group(0) if basic else ""), "", ""
    subject_detail = f"{int(enhanced.group(2))}.{int(enhanced.group(3))}"
    return (basic.group(0) if basic else ""), enhanced.group(1), subject_detail


def _normalise(reply: str, basic: str) -> str:
    """Lower-case, single-spaced text with host names and continuation prefixes removed."""
    text = _HOST_SAID.sub("", reply)
    text = _HOST_ADDR.sub(" ", text)
    if basic:
        # Multi-line replies repeat "550-5.1.1 " on every line; those prefixes
        # would split phrases ("likely unsolicited 550-5.7.1 mail"). The first
        # one stays: a rule may need to know the text came with a reply code.
        text = re.sub(rf"(?<=\s){basic}[ -](?:[245]\.\d{{1,3}}\.\d{{1,3}}\s)?", " ", text)
    return _SPACE.sub(" ", text).strip().lower()


def _is_final(status: Status | str) -> bool:
    return status in (Status.BOUNCED, Status.EXPIRED, Status.REJECTED)


def classify(status: Status, dsn: str, reply: str) -> OutcomeClass:
    """The class of one recipient's outcome from the MTA's status, DSN code and reply text.

    A `sent` status is DELIVERED whatever the text says; `deferred` is
    TEMPORARY (it counts only if it later bounces or expires); a `rejected`
    with a 4xx code is TEMPORARY too (greylisting, the client retries).
    Anything final is looked up in `RULES`; what no rule knows is
    OTHER_PERMANENT. Never raises.
    """
    if status == Status.SENT:
        return OutcomeClass.DELIVERED
    if status == Status.DEFERRED or not _is_final(status):
        return OutcomeClass.TEMPORARY
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

    text = _normalise(reply, basic)
    for rule in RULES:
        if rule.matches(text, code):
            return rule.outcome
    return OutcomeClass.OTHER_PERMANENT
