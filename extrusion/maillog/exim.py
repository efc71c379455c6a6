"""Exim main-log messages to records: enough to attribute outcomes to senders.

Read: `<=` arrival (`H=name (helo) [addr]`, `A=authenticator:user`, `S=size`,
`id=`; `<= <>` is the null sender), `=>`/`->` delivered, `**` failed,
`==` deferred, `Completed`, and `rejected RCPT <…>` session lines. Message ids
are the classic `1tHxyz-000ABC-12` and the longer Exim 4.97 form. Same
contract as `extrusion.maillog.postfix.parse`.
"""

from __future__ import annotations

import re

from extrusion.maillog.records import (
    ClientSeen,
    Delivery,
    MessageIdSeen,
    Queued,
    Record,
    Rejected,
    Removed,
    number,
)

_MSGID = re.compile(r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}")
_HOST = re.compile(r"H=(?:(\S+) )?(?:\(([^)]*)\) )?\[([^\]]+)\](?::\d+)?")
_AUTH = re.compile(r" A=[^:\s]+:(\S+)")
_SIZE = re.compile(r" S=(\d+)")
_ID = re.compile(r" id=(\S+)")
_DSN = re.compile(r"(?:(\d{3})[ -])?([245]\.\d{1,3}\.\d{1,3})")
_REJECT_RCPT = re.compile(
    r"(?:H=.*?|\[[^\]]+\](?::\d+)?)(?: .*?)? F=<([^>]*)> rejected RCPT <([^>]*)>: (.*)",
    re.DOTALL,
)

Result = tuple[Record, ...] | None

_STATUS = {"=>": "sent", "->": "sent", "**": "bounced", "==": "deferred"}


def parse(message: str) -> Result:
    mid, _, rest = message.partition(" ")
    if not _MSGID.fullmatch(mid):
        if " rejected RCPT " in message:
            return _reject(message)
        return ()
    flag = rest[:2]
    if flag == "<=":
        return _arrival(mid, rest[3:])
    if flag in _STATUS:
        return _delivery(mid, _STATUS[flag], rest[3:])
    if rest == "Completed":
        return (Removed(mid),)
    if " rejected RCPT " in rest:
        return _reject(rest)
    return ()


def _arrival(mid: str, rest: str) -> Result:
    sender, _, fields = rest.partition(" ")
    if not sender:
        return None
    s = _SIZE.search(fields)
    # The size is always logged: a line without it (or with no number) was cut short.
    size = number(s.group(1)) if s is not None else None
    if size is None:
        return None
    envelope_from = "" if sender == "<>" else sender
    out: list[Record] = [Queued(mid, envelope_from, size)]
    host = _HOST.search(fields)
    if host is not None:
        auth = _AUTH.search(fields)
        out.append(ClientSeen(mid, host.group(1) or "", host.group(3),
                              sasl_user=auth.group(1) if auth else ""))
    if ident := _ID.search(fields):
        out.append(MessageIdSeen(mid, ident.group(1)))
    return tuple(out)


def _delivery(mid: str, status: str, rest: str) -> Result:
    recipient, _, fields = rest.partition(" ")
    if recipient.endswith(":"):
        # `** x@y: Unrouteable address` — the reason follows the address directly.
        recipient, fields = recipient[:-1], ": " + fields
    if "@" not in recipient and status != "sent":
        return None
    host = _HOST.search(fields)
    relay = f"{host.group(1) or ''}[{host.group(3)}]" if host else ""
    reply = ""
    if status != "sent":
        cut = fields.find(": ")
        reply = fields[cut + 2 :] if cut >= 0 else fields
    else:
        c = fields.find(' C="')
        if c >= 0:
            reply = fields[c + 4 :].rstrip('"')
    d = _DSN.search(reply)
    dsn = d.group(2) if d else {"sent": "2.0.0", "deferred": "4.0.0"}.get(status, "5.0.0")
    return (Delivery(mid, recipient, status, dsn, relay, reply),)


def _reject(text: str) -> Result:
    m = _REJECT_RCPT.search(text)
    host = _HOST.search(text)
    if m is None:
        return None
    name, addr = (host.group(1) or "", host.group(3)) if host else ("", "")
    if not addr:
        bracket = re.search(r"\[([^\]]+)\]", text)
        addr = bracket.group(1) if bracket else ""
    reply = m.group(3)
    d = _DSN.search(reply)
    code = d.group(1) if d and d.group(1) else "550"
    dsn = d.group(2) if d else f"{code[0]}.0.0"
    helo = host.group(2) or "" if host else ""
    return (Rejected("", "reject", "RCPT", name, addr, code, dsn, reply, m.group(2), m.group(1),
                     helo),)
