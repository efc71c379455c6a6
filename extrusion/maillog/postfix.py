"""Postfix log messages to records.

The service is the last component of the syslog tag, so `postfix/smtpd`,
`postfix/submission/smtpd`, `postfix-out/smtp` and a custom `syslog_name`
such as `mta2/relay/smtp` are all read the same way. Formats follow what
Postfix 2.x and 3.x write (smtpd, cleanup, qmgr, the delivery agents, bounce,
postsuper, pickup).

`parse(service, message)` returns a tuple of records, `()` for a line that
is fine but says nothing we need (connect, TLS, statistics…), or None for a
line that looks like one we need but cannot be read (cut short, garbled).
"""

from __future__ import annotations

import re

from extrusion.maillog.mxlines import address, parse_postscreen
from extrusion.maillog.records import (
    FAILED_COMMANDS,
    MAX_DIGITS,
    BounceNotice,
    ClientSeen,
    ClientVerdict,
    Delivery,
    Expired,
    Held,
    HeloNoted,
    LocalSubmission,
    MessageIdSeen,
    Queued,
    Record,
    Rejected,
    Removed,
)
from extrusion.scoring.decisions import HELO_NOTE

# Every Postfix daemon and command that logs; the last component of the tag.
SERVICES = frozenset(
    {
        "smtpd", "cleanup", "qmgr", "nqmgr", "smtp", "lmtp", "local", "virtual", "pipe",
        "error", "retry", "discard", "bounce", "defer", "trace", "postsuper", "pickup",
        "postscreen", "dnsblog", "anvil", "scache", "tlsmgr", "tlsproxy", "master",
        "postfix-script", "postlogd", "verify", "proxymap", "proxywrite", "trivial-rewrite",
        "flush", "showq", "sendmail", "postdrop", "postqueue", "postmap", "postalias",
        "postmulti", "postlog", "oqmgr", "spawn", "qmqpd", "smtpd-sink", "postconf",
    }
)

NOQUEUE = "NOQUEUE"
MESSAGE_ID = "message-id="
DELIVERY_STATUSES = frozenset({"sent", "deferred", "bounced", "expired"})

_ADDR = r"<([^>]*)>"
# `to=<…>, [orig_to=<…>, ]relay=…, ` then anything up to the first `dsn=` from which the
# tail reads to the end of the line: `dsn=D.D.D, status=WORD` and then nothing,
# ` (REPLY)` or `, returned to sender`. The head and the tail match one way only, so
# trying the tail at each `dsn=` in turn (found by str.find) reads what a lazy `.*?`
# between the two would, without the expression stepping through every character in
# between; the tail's end is compared, not matched (no `.*` through the reply).
_DELIVERY_HEAD = re.compile(r"to=" + _ADDR + r", (?:orig_to=" + _ADDR + r", )?relay=([^,]*), ")
_DELIVERY_STATUS = re.compile(r"dsn=(\d\.\d{1,3}\.\d{1,3}), status=([a-z]+)")
RETURNED = ", returned to sender"
CLIENT = re.compile(r"([^\[\s]*)\[([^\]]*)\]")
# At most MAX_DIGITS ASCII digits and no other digit after them: a longer or
# non-ASCII count is no match (then garbled), and what matches goes to int() as it is.
QMGR_FROM = re.compile(
    r"from=" + _ADDR
    + rf", size=([0-9]{{1,{MAX_DIGITS}}}), nrcpt=([0-9]{{1,{MAX_DIGITS}}})(?!\d)"
)
_EXPIRED = re.compile(r"from=" + _ADDR + r", status=expired")
_BOUNCE = re.compile(
    r"((?:sender|postmaster) (?:non-delivery|delivery status|delay|success) notification): (\w+)"
)
_PICKUP = re.compile(r"uid=(\d+) from=" + _ADDR)
# `STAGE from NAME[ADDR]: [CODE ][D.S.N ]TEXT` before the `; from=<…>` tail.
_REJECT_HEAD = re.compile(
    r"(\S+) from ([^\[\s]*)\[([^\]]*)\](?::\d+)?: (?:(\d{3}) )?(?:(\d\.\d{1,3}\.\d{1,3}) )?(.*)",
    re.DOTALL,
)
# header/body checks: `header Subject: x from NAME[ADDR]; from=<…> … helo=<…>: 5.7.1 text`
_CHECK_HEAD = re.compile(r"(header|body) .* from ([^\[\s]*)\[([^\]]*)\](?::\d+)?$", re.DOTALL)
# smtpd and cleanup separate the fields with a space, postscreen with ", ".
_TAIL = re.compile(
    r"from=" + _ADDR + r"(?:,? to=" + _ADDR + r")?(?:,? proto=[^\s,]+)?(?:,? helo=<([^>]*)>)?"
)
_DSN_IN_TEXT = re.compile(r"(?:(\d{3})[ -])?(\d\.\d{1,3}\.\d{1,3})")

Result = tuple[Record, ...] | None


def is_queue_id(text: str) -> bool:
    """Short (hex) and long (base-52ish) Postfix queue ids; NOQUEUE is handled apart."""
    return 5 <= len(text) <= 20 and text.isalnum() and text.isascii()


def parse(service: str, message: str) -> Result:
    """Records in one Postfix message (the text after `prog[pid]: `)."""
    colon = message.find(": ")
    if colon < 0:
        return _unqueued(service, message)
    qid = message[:colon]
    # is_queue_id(), inlined: this runs for every Postfix line.
    if not (4 < colon < 21 and qid.isalnum() and qid.isascii()):
        return _unqueued(service, message)
    rest = message[colon + 2 :]
    if qid == NOQUEUE:
        return _session_reject(rest, "")
    if rest.startswith("to=<"):
        return _delivery(qid, rest)
    if service == "smtpd" or service == "postscreen":
        if rest.startswith("client="):
            return _client(qid, rest)
        return _session_reject(rest, qid)
    if service in ("qmgr", "nqmgr", "oqmgr"):
        if rest.startswith("from=<"):
            m = QMGR_FROM.match(rest)
            if m:
                return (Queued(qid, m.group(1), int(m.group(2)), int(m.group(3))),)
            m = _EXPIRED.match(rest)
            if m:
                return (Expired(qid, m.group(1)),)
            return None
        if rest == "removed":
            return (Removed(qid),)
        return ()
    if service == "cleanup":
        if rest.startswith(MESSAGE_ID):
            return (MessageIdSeen(qid, message_id(rest)),)
        return _session_reject(rest, qid)
    if service == "bounce":
        m = _BOUNCE.match(rest)
        if m:
            return (BounceNotice(qid, m.group(2), m.group(1)),)
        return ()
    if service == "postsuper":
        if rest == "removed":
            return (Removed(qid),)
        if rest == "placed on hold":
            return (Held(qid, "postsuper"),)
        return ()
    if service == "pickup":
        m = _PICKUP.match(rest)
        if m:
            return (LocalSubmission(qid, m.group(1), m.group(2)),)
        return None
    return ()


def message_id(rest: str) -> str:
    """The Message-ID of cleanup's `message-id=<…>` (`rest`: after the queue id)."""
    mid = rest[len(MESSAGE_ID) :].strip()
    if mid.startswith("<") and mid.endswith(">"):
        mid = mid[1:-1]
    return mid


def _unqueued(service: str, message: str) -> Result:
    """A line without a queue id: postscreen's verdicts and smtpd's `disconnect` line are
    read (only here, off the path of the lines with one); "warning: …", "connect from …",
    "statistics: …" and the like say nothing."""
    if service == "postscreen":
        return parse_postscreen(message)
    if service == "smtpd" and message.startswith("disconnect from "):
        return disconnect(message)
    return ()


# `disconnect from NAME[ADDR] ehlo=1 mail=1 rcpt=0/1 … commands=3/4`: N/M = N of M succeeded.
DISCONNECT = re.compile(
    r"disconnect from [^\[\s]{0,255}\[([^\]]{1,64})\](?::\d{1,5})?( .{0,300})?"
)
_COMMANDS = re.compile(r" commands=(\d{1,9})/(\d{1,9})$")


def disconnect(message: str) -> Result:
    """smtpd's last line of a session: a record only when commands failed (a session that
    was refused: its client is seen, whatever else it did)."""
    m = DISCONNECT.fullmatch(message)
    if m is None:
        return None if len(message) <= 600 else ()
    tail = m.group(2)
    # A failed command is counted `N/M`: with no "/" in the counts every command succeeded
    # (most sessions), and the search for `commands=N/M` is not needed.
    if not tail or "/" not in tail:
        return ()
    c = _COMMANDS.search(tail)
    if c is None or c.group(1) == c.group(2) or not address(m.group(1)):
        return ()  # all succeeded, or `unknown[unknown]`: nobody to hold it against
    return (ClientVerdict(m.group(1), FAILED_COMMANDS, tail.strip()[:80]),)


def _client(qid: str, rest: str) -> Result:
    if ", " not in rest:
        # Most lines: `client=NAME[ADDR]` alone (no SASL login, no XFORWARD).
        m = CLIENT.fullmatch(rest, len("client="))
        return None if m is None else (ClientSeen(qid, m.group(1), m.group(2)),)
    values = fields(rest)
    m = CLIENT.fullmatch(values.get("client", ""))
    if m is None:
        return None
    orig = CLIENT.fullmatch(values.get("orig_client", ""))
    return (
        ClientSeen(
            qid,
            m.group(1),
            m.group(2),
            sasl_user=values.get("sasl_username", ""),
            sasl_method=values.get("sasl_method", ""),
            orig_queue_id=values.get("orig_queue_id", ""),
            orig_client_name=orig.group(1) if orig else "",
            orig_client_addr=orig.group(2) if orig else "",
        ),
    )


def fields(rest: str) -> dict[str, str]:
    """`a=1, b=2` into a dict; values never contain ", " in the lines we read this way."""
    out: dict[str, str] = {}
    for part in rest.split(", "):
        key, eq, value = part.partition("=")
        if eq:
            out[key] = value
    return out


def _delivery(qid: str, rest: str) -> Result:
    d = delivery(qid, rest)
    return None if d is None else (d,)


def delivery(qid: str, rest: str) -> Delivery | None:
    """A delivery agent's `to=<…>, …, status=…` line (`rest`: after the queue id), or None
    when it cannot be read."""
    f = delivery_fields(rest, 0)
    if f is None:
        return None
    to, orig_to, relay, dsn, status, reply = f
    return Delivery(qid, to, status, dsn, relay, reply, orig_to or "")


DeliveryFields = tuple[str, "str | None", str, str, str, str]


def delivery_fields(text: str, pos: int) -> DeliveryFields | None:
    """`delivery()` of `text[pos:]` as (recipient, orig_to or None, relay, dsn, status,
    reply): no record, and no copy of the line's tail (the Postfix delivery lane's)."""
    h = _DELIVERY_HEAD.match(text, pos)
    if h is None:
        return None
    at = text.find("dsn=", h.end())
    while at >= 0:
        m = _DELIVERY_STATUS.match(text, at)
        if m is not None:
            end = m.end()
            if end == len(text) or text[end:] == RETURNED:
                reply = ""
                break
            if text.startswith(" (", end) and text.endswith(")"):
                reply = text[end + 2 : -1]
                break
        at = text.find("dsn=", at + 1)
    else:
        return None
    to, orig_to, relay = h.groups()
    dsn, status = m.groups()
    if status not in DELIVERY_STATUSES:
        return None
    return to, orig_to, relay, dsn, status, reply


_ENVELOPE_STAGES = frozenset({"MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "BDAT"})
def _info(body: str, qid: str) -> Result:
    """`info:` lines: extrusion's note of a message's suspect HELO (see decisions.HELO_NOTE);
    other INFO actions (an operator's access tables) are of no interest."""
    if not qid or HELO_NOTE not in body:
        return ()
    cut = body.rfind("; from=<")
    t = _TAIL.match(body, cut + 2) if cut >= 0 else None
    if t is None or not t.group(3):
        return None
    return (HeloNoted(qid, t.group(3)),)


_REJECT_KINDS = ("reject", "milter-reject", "milter-hold", "hold", "milter-discard", "discard")


def _session_reject(rest: str, qid: str) -> Result:
    """`reject:`, `milter-reject:`, `milter-hold:` and `hold:` lines (smtpd and cleanup)."""
    colon = rest.find(": ")
    kind = rest[:colon]
    if kind == "info":
        return _info(rest[colon + 2:], qid)
    if colon < 0 or kind not in _REJECT_KINDS:
        return ()
    body = rest[colon + 2 :]
    cut = body.rfind("; from=<")
    if cut < 0:
        # Refused before MAIL FROM (CONNECT, HELO): no envelope, nothing to attribute.
        # At a later stage the envelope is always logged: without it the line was cut.
        stage = body.partition(" ")[0]
        return None if stage in _ENVELOPE_STAGES or " from " not in body else ()
    head, tail = body[:cut], body[cut + 2 :]
    t = _TAIL.match(tail)
    if t is None:
        return None
    envelope_from, recipient, helo = t.group(1), t.group(2) or "", t.group(3) or ""
    m = _REJECT_HEAD.fullmatch(head)
    if m is not None:
        stage, name, addr, code, dsn, text = m.groups()
    else:
        c = _CHECK_HEAD.fullmatch(head)
        if c is None:
            return None
        stage, name, addr = "END-OF-MESSAGE", c.group(2), c.group(3)
        # The check's own reply text follows `helo=<…>: ` in the tail.
        text = tail[t.end() :].lstrip(": ")
        d = _DSN_IN_TEXT.match(text)
        code, dsn = (d.group(1), d.group(2)) if d else (None, None)
        if d:
            text = text[d.end() :].lstrip()
    if kind in ("milter-hold", "hold", "milter-discard", "discard"):
        if not qid:
            return ()
        return (Held(qid, kind, text or head, name, addr, recipient, envelope_from, helo),)
    code = code or ""
    dsn = dsn or ""
    if not dsn and code:
        dsn = f"{code[0]}.0.0"
    if not code and dsn:
        code = "550" if dsn[0] == "5" else "450"
    return (
        Rejected(qid, kind, stage, name, addr, code, dsn, text, recipient, envelope_from, helo),
    )
