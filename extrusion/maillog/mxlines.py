"""What an MX's log says about its clients beyond the queue: postscreen's verdicts and the
spam filters' own lines (amavis, spamd), as records.

postscreen judges a client before smtpd ever sees it: a bot it refuses leaves no queue id
and, unless it got as far as RCPT, no `NOQUEUE: reject`. Its verdict lines are the only
trace (Postfix 3.x wording; DENYLISTED is 3.6's name for BLACKLISTED):

    PREGREET 11 after 0.07 from [192.0.2.7]:51234: EHLO bot\\r\\n
    DNSBL rank 3 for [192.0.2.7]:51234
    COMMAND PIPELINING from [192.0.2.7]:51234 after EHLO: MAIL FROM:<a@b>\\r\\n
    NON-SMTP COMMAND from [192.0.2.7]:51234 after CONNECT: GET / HTTP/1.1
    BARE NEWLINE from [192.0.2.7]:51234 after DATA
    HANGUP after 0.5 from [192.0.2.7]:51234 in tests before SMTP handshake

A spam filter that runs as a content filter or behind a milter logs its verdict itself:

    amavis[9]: (12345-01) Blocked SPAM {RejectedInbound}, [192.0.2.7]:5123 [192.0.2.7]
        <a@b.example> -> <x@our.example>, Queue-ID: 4AbCd, Message-ID: <m@b>, …, Hits: 12.3, …
    spamd[9]: spamd: result: Y 15 - BAYES_99,… scantime=0.3,size=1234,…,mid=<m@b>,autolearn=no

Like the MTA parsers: a tuple of records, `()` for a line of no interest, None for a line
that should be one of these but cannot be read. Nothing in a line makes them raise.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re

from extrusion.maillog.records import ClientVerdict, FilterVerdict, Record

Result = tuple[Record, ...] | None

# Verdicts that say the client is no real MTA (a real one waits for the greeting, does not
# pipeline unasked, speaks SMTP and ends lines with CRLF) or is listed; HANGUP is kept too,
# but the joiner counts it only after a PREGREET of the same client (alone it is a legitimate
# client's impatience as often as a bot's).
POSTSCREEN_VERDICTS = (
    "PREGREET", "DNSBL", "COMMAND PIPELINING", "NON-SMTP COMMAND", "BARE NEWLINE", "HANGUP",
    "DENYLISTED", "BLACKLISTED",
)
HANGUP = "HANGUP"
PREGREET = "PREGREET"
_ENDPOINT = re.compile(r"\[([0-9A-Fa-f:.]{2,45})\]:\d{1,5}")
DETAIL_CHARS = 80  # of what follows the address: enough for the operator, bounded

FILTER_PROGRAMS = frozenset({"amavis", "amavisd", "amavisd-new", "spamd"})
# amavis: `(ID) ACTION CATEGORY[ (detail)] [{how}], [addr]:port [addr] <from> -> <to>,...`
_AMAVIS = re.compile(
    r"\([0-9A-Za-z-]{1,40}\) (Passed|Blocked|Discarded|Bounced|Rejected) ([A-Z-]{3,20})"
    r"(?: \([^)]{0,200}\))?(?: \{[A-Za-z]{0,40}\})?,((?: (?:LOCAL )?\[[0-9A-Fa-f:.]{2,45}\]"
    r"(?::\d{1,5})?){1,2}) <([^<>\s]{0,320})> -> "
)
_AMAVIS_QID = re.compile(r", Queue-ID: ([0-9A-Za-z]{5,20})(?:,|$)")
_AMAVIS_HITS = re.compile(r", Hits: (-?\d{1,4}(?:\.\d{1,3})?)(?:,|$)")
_MESSAGE_ID = re.compile(r"(?:, Message-ID: |mid=)<([^<>\s]{1,255})>")
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]{2,45})\]")
# Categories a SpamAssassin-style filter marks as spam (X-Spam-Flag: YES): SPAMMY is
# amavis's tag2 level, the one that writes that header; SPAM its kill level.
AMAVIS_SPAM = frozenset({"SPAM", "SPAMMY"})
AMAVIS_KNOWN = frozenset({"CLEAN", "SPAM", "SPAMMY", "BANNED", "INFECTED", "BAD-HEADER",
                          "UNCHECKED", "MTA-BLOCKED", "OVERSIZED", "OTHER"})
_SPAMD = re.compile(r"spamd: result: ([Y.]) (-?\d{1,4}) - ")


@functools.lru_cache(maxsize=4096)
def address(text: str) -> str:
    """A literal IP address as logged, or "" when it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def parse_postscreen(message: str) -> Result:
    """A postscreen verdict line (no queue id), `()` for its other lines."""
    for kind in POSTSCREEN_VERDICTS:
        if message.startswith(kind) and message[len(kind):len(kind) + 1] in (" ", ""):
            break
    else:
        return ()
    m = _ENDPOINT.search(message, len(kind), len(kind) + 80)
    if m is None:
        return None
    addr = address(m.group(1))
    if not addr:
        return None
    detail = message[m.end():].strip(" :")
    if kind == "DNSBL":
        detail = message[: m.start()].removesuffix(" for ").strip()  # "DNSBL rank 3"
    return (ClientVerdict(addr, kind, _cut(detail)),)


def _cut(text: str) -> str:
    text = text[:DETAIL_CHARS]
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def parse_filter(program: str, message: str) -> Result:
    """An amavis or spamd verdict line; `()` for their other lines."""
    if program == "spamd":
        return _spamd(message)
    return _amavis(message)


def _amavis(message: str) -> Result:
    m = _AMAVIS.search(message, 0, 200)
    if m is None:
        # amavis logs much else (start-up, SpamAssassin rule warnings, per-recipient
        # details): only a line that says Passed/Blocked and fails to read is garbled.
        return None if re.search(r"\) (?:Passed|Blocked) [A-Z]", message[:120]) else ()
    _action, category, endpoints, envelope_from = m.groups()
    if category not in AMAVIS_KNOWN:
        return None
    rest = message[m.end():]
    qid = _AMAVIS_QID.search(rest)
    mid = _MESSAGE_ID.search(rest)
    hits = _AMAVIS_HITS.search(rest)
    client = ""
    for raw in _BRACKETED.findall(endpoints):
        addr = address(raw)
        # The first is the SMTP client as XFORWARD told amavis; without XFORWARD it is the
        # MTA on loopback, and the second (from the MTA's own Received header) is the one.
        if addr and not ipaddress.ip_address(addr).is_loopback:
            client = addr
            break
    return (FilterVerdict(
        "amavis", category in AMAVIS_SPAM, queue_id=qid.group(1) if qid else "",
        message_id=mid.group(1) if mid else "", client_addr=client,
        envelope_from=envelope_from, score=_score(hits.group(1)) if hits else None,
    ),)


def _spamd(message: str) -> Result:
    if not message.startswith("spamd: result: "):
        return ()
    m = _SPAMD.match(message)
    if m is None:
        return None
    mid = _MESSAGE_ID.search(message, m.end())
    if mid is None:
        return ()  # no Message-ID: nothing to join the verdict to
    return (FilterVerdict("spamd", m.group(1) == "Y", message_id=mid.group(1),
                          score=_score(m.group(2))),)


def _score(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
