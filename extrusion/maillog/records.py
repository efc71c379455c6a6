"""Typed records the MTA parsers produce from single log lines.

They are MTA-neutral: Postfix, Sendmail and Exim lines all become these, and
`extrusion.maillog.join` turns them, joined per queue id, into engine events.
Addresses are kept as logged, without the angle brackets; "" is the null sender.

Nothing changes a record once its parser made it, but the classes are not frozen:
a frozen dataclass sets each field through `object.__setattr__`, which made
building one four times dearer, and nearly every log line builds one.
"""

from __future__ import annotations

from dataclasses import dataclass

# Digits a count or size may have: more than any real message, and far below the
# 4,300 at which int() refuses to convert (a forged line must not reach that).
MAX_DIGITS = 18


def number(text: str) -> int | None:
    """A count or size as logged (ASCII digits only), or None when it is not one.

    `str.isdigit()` alone would accept "²", which int() then refuses.
    """
    if 0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


@dataclass(slots=True)
class ClientSeen:
    """Who handed a message to the MTA (Postfix smtpd `client=`, Sendmail `relay=`, Exim `H=`)."""

    queue_id: str
    client_name: str
    client_addr: str
    sasl_user: str = ""
    sasl_method: str = ""
    # Postfix behind a content filter with XFORWARD: the original client and queue id.
    orig_queue_id: str = ""
    orig_client_name: str = ""
    orig_client_addr: str = ""


@dataclass(slots=True)
class SaslSeen:
    """Sendmail's separate `AUTH=server, relay=…, authid=…` line."""

    queue_id: str
    sasl_user: str
    sasl_method: str = ""


@dataclass(slots=True)
class MessageIdSeen:
    queue_id: str
    message_id: str


@dataclass(slots=True)
class Queued:
    """The envelope as queued: Postfix qmgr `from=<…>, size=N, nrcpt=N` (repeats on retries)."""

    queue_id: str
    envelope_from: str
    size: int = 0
    nrcpt: int = 0


@dataclass(slots=True)
class Delivery:
    """One recipient's delivery attempt. `status` is sent/deferred/bounced/expired."""

    queue_id: str
    recipient: str
    status: str
    dsn: str = ""
    relay: str = ""
    reply: str = ""
    orig_to: str = ""


@dataclass(slots=True)
class Expired:
    """qmgr `from=<…>, status=expired, returned to sender`: every deferred recipient failed."""

    queue_id: str
    envelope_from: str


@dataclass(slots=True)
class Rejected:
    """Refused during the SMTP session (Postfix `reject:`/`milter-reject:`, Sendmail `reject=`).

    `queue_id` is "" for NOQUEUE rejects. `kind` is "reject" or "milter-reject".
    """

    queue_id: str
    kind: str
    stage: str
    client_name: str
    client_addr: str
    code: str
    dsn: str
    reply: str
    recipient: str = ""
    envelope_from: str = ""
    helo: str = ""


@dataclass(slots=True)
class HeloNoted:
    """extrusion's policy server had Postfix log a message's suspect HELO (an INFO line)."""

    queue_id: str
    helo: str


FAILED_COMMANDS = "FAILED COMMANDS"


@dataclass(slots=True)
class ClientVerdict:
    """A verdict on a client outside any transaction: no queue id, no envelope. postscreen's
    (PREGREET, DNSBL rank, COMMAND PIPELINING, NON-SMTP COMMAND, BARE NEWLINE, HANGUP…), or
    smtpd's `disconnect` line counting failed commands (`FAILED_COMMANDS`).

    `kind` is postscreen's own word(s), upper-case ("PREGREET", "DNSBL"); `detail` the rest,
    cut short."""

    client_addr: str
    kind: str
    detail: str = ""


@dataclass(slots=True)
class FilterVerdict:
    """A spam filter's verdict from its own log line (amavis, spamd).

    Joined to the message by `queue_id` (amavis) or `message_id` (spamd); amavis also
    names the original client (`client_addr`) and the envelope. `spam` is the verdict;
    `score` its hits when logged (None otherwise)."""

    filter: str
    spam: bool
    queue_id: str = ""
    message_id: str = ""
    client_addr: str = ""
    envelope_from: str | None = None
    score: float | None = None


@dataclass(slots=True)
class Held:
    """Put on hold (`milter-hold:`, header/body check `hold:`, postsuper `placed on hold`)."""

    queue_id: str
    kind: str
    reason: str = ""
    # From the `hold:`/`milter-hold:` line itself (empty for postsuper's): a message held
    # on arrival never reaches qmgr, so this is all the log says about its envelope.
    client_name: str = ""
    client_addr: str = ""
    recipient: str = ""
    envelope_from: str = ""
    helo: str = ""


@dataclass(slots=True)
class BounceNotice:
    """The MTA created a notification (`sender non-delivery notification: NEWQID`).

    The new message carries the null sender; its own failures are never the customer's.
    """

    queue_id: str
    new_queue_id: str
    kind: str


@dataclass(slots=True)
class LocalSubmission:
    """Mail submitted on the host itself (Postfix pickup `uid=N from=<…>`): no client."""

    queue_id: str
    uid: str
    envelope_from: str


@dataclass(slots=True)
class Removed:
    """The queue file is gone (Postfix `removed`, Exim `Completed`): drop the state."""

    queue_id: str


Record = (
    ClientSeen
    | SaslSeen
    | MessageIdSeen
    | Queued
    | Delivery
    | Expired
    | Rejected
    | Held
    | HeloNoted
    | ClientVerdict
    | FilterVerdict
    | BounceNotice
    | LocalSubmission
    | Removed
)
