"""Sendmail log messages to records: enough to attribute outcomes to senders.

Read: `from=<…>, size=…, nrcpts=…, msgid=…, relay=NAME [ADDR]` (the client),
`AUTH=server, relay=…, authid=USER` (SASL), `to=<a>,<b>, …, dsn=X.Y.Z, stat=…`
(outcomes; one line may carry several recipients), `QID2: DSN: …` (a bounce
created as QID2) and `ruleset=check_rcpt, arg1=<…>, relay=…, reject=550 …`.
Same contract as `extrusion.maillog.postfix.parse`.
"""

from __future__ import annotations

import re

from extrusion.maillog.records import (
    BounceNotice,
    ClientSeen,
    Delivery,
    MessageIdSeen,
    Queued,
    Record,
    Rejected,
    SaslSeen,
    number,
)

PROGRAMS = frozenset({"sendmail", "sm-mta", "sm-msp-queue"})

_RELAY = re.compile(r"(?:(\S+?)\.? )?\[(?:IPv6:)?([^\]]+)\]")
_TO = re.compile(r"to=(.*?), (?:ctladdr=|delay=|orcpt=)")
# Sendmail 8.17 puts the remote's `reply=` between dsn= and stat=; the reply
# may itself contain ", " so it runs up to the last ", stat=".
_DSN = re.compile(r"dsn=(\d\.\d{1,3}\.\d{1,3}), (?:reply=(.*), )?stat=(.*)", re.DOTALL)
_REJECT = re.compile(r"(\d{3}) (?:(\d\.\d{1,3}\.\d{1,3}) )?(.*)", re.DOTALL)
_QID = re.compile(r"[0-9A-Za-z]{8,20}")
_BOUNCE_KINDS = ("DSN", "return to sender", "postmaster notify", "sender notify")

Result = tuple[Record, ...] | None


def parse(message: str) -> Result:
    if message.startswith("ruleset="):
        return _reject("", message)
    colon = message.find(": ")
    if colon < 0:
        return ()
    qid, rest = message[:colon], message[colon + 2 :]
    if rest.startswith("ruleset="):
        return _reject(qid, rest)
    if not _QID.fullmatch(qid):
        return ()
    if rest.startswith("from="):
        return _from(qid, rest)
    if rest.startswith("to="):
        return _to(qid, rest)
    if rest.startswith("AUTH=server"):
        f = _fields(rest)
        if "authid" not in f:
            return None
        return (SaslSeen(qid, f["authid"], f.get("mech", "")),)
    # `QID: NEWQID: DSN: User unknown` — the bounce Sendmail generated.
    colon2 = rest.find(": ")
    if colon2 > 0 and _QID.fullmatch(rest[:colon2]):
        what = rest[colon2 + 2 :]
        for kind in _BOUNCE_KINDS:
            if what.startswith(kind):
                return (BounceNotice(qid, rest[:colon2], kind),)
    return ()


def _fields(rest: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in rest.split(", "):
        key, eq, value = part.partition("=")
        if eq and key not in out:
            out[key] = value
    return out


def _strip(addr: str) -> str:
    addr = addr.strip()
    return addr[1:-1] if addr.startswith("<") and addr.endswith(">") else addr


def _from(qid: str, rest: str) -> Result:
    f = _fields(rest)
    # relay= always ends the line: without it the line was cut short. A size or a
    # recipient count that is not a number means a corrupted (or forged) line.
    size = number(f.get("size", ""))
    nrcpts = number(f.get("nrcpts") or "0")
    if "relay" not in f or size is None or nrcpts is None:
        return None
    out: list[Record] = [Queued(qid, _strip(f.get("from", "")), size, nrcpts)]
    if mid := f.get("msgid"):
        out.append(MessageIdSeen(qid, _strip(mid)))
    relay = f.get("relay", "")
    m = _RELAY.match(relay)
    if m is not None:
        out.append(ClientSeen(qid, m.group(1) or "", m.group(2)))
    return tuple(out)


def _to(qid: str, rest: str) -> Result:
    m = _TO.match(rest)
    d = _DSN.search(rest)
    if m is None or d is None:
        return None
    dsn, remote_reply, stat = d.group(1), d.group(2), d.group(3)
    f = _fields(rest[: d.start()])
    relay = f.get("relay", "")
    if stat.startswith("Sent"):
        status = "sent"
    elif stat.startswith("Deferred") or dsn[0] == "4":
        status = "deferred"
    else:
        status = "bounced"
    reply = stat
    if remote_reply:
        reply = remote_reply
    elif stat.endswith(")") and "(" in stat:
        reply = stat[stat.index("(") + 1 : -1]
    # Recipients going to one host share a line: `to=<a@x>,<b@x>`.
    recipients = [_strip(r) for r in _split_addrs(m.group(1))]
    return tuple(Delivery(qid, r, status, dsn, relay, reply) for r in recipients if r)


def _split_addrs(text: str) -> list[str]:
    return [part for part in re.split(r",(?=<|[^,\s]+@)", text)]


def _reject(qid: str, rest: str) -> Result:
    f = _fields(rest)
    reject = f.get("reject")
    if reject is None:
        return ()
    r = _REJECT.match(reject)
    if r is None:
        return None
    relay = _RELAY.search(f.get("relay", ""))
    name, addr = (relay.group(1) or "", relay.group(2)) if relay else ("", "")
    ruleset = f.get("ruleset", "")
    arg1 = _strip(f.get("arg1", ""))
    recipient = arg1 if ruleset == "check_rcpt" else ""
    sender = arg1 if ruleset == "check_mail" else ""
    stage = {"check_rcpt": "RCPT", "check_mail": "MAIL", "check_relay": "CONNECT"}.get(
        ruleset, ruleset
    )
    code, dsn, text = r.group(1), r.group(2) or f"{r.group(1)[0]}.0.0", r.group(3)
    return (Rejected(qid, "reject", stage, name, addr, code, dsn, text, recipient, sender),)
