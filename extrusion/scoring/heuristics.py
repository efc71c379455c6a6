"""The small judgements about one message the engine combines into findings.

Each function looks at one message (its envelope, a few headers, counts)
and answers one question: is this a bounce, an auto-reply, list traffic,
which list, a sender inside our own network (spam filters' verdicts are in
`verdicts.py`, forwarded mail in `forwarding.py`). They are pure: no I/O, no
clock. Bad counts and bad networks are programming or configuration errors
and raise ValueError; text from the wire never makes them raise.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from extrusion.keys import parse_address
from extrusion.netaddr import IPNetwork, networks
from extrusion.scoring.events import Headers
from extrusion.scoring.helo import safe_text

# Local parts of senders that answer mail automatically: bounce generators,
# vacation programs, "do not reply" robots. Compared whole (after stripping
# tags), so a list's "team-bounces@" is not one of them.
AUTO_REPLY_LOCALPARTS = frozenset({
    "postmaster",
    "administrator",
    "mailer-daemon",
    "mailer_daemon",
    "mailerdaemon",
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "do_not_reply",
    "bounce",
    "bounces",
    "autoreply",
    "auto-reply",
    "auto_reply",
    "autoresponder",
    "auto-responder",
    "vacation",
})

# Precedence values auto-responders use (vacation(1) says "bulk" or "junk");
# mailing lists say "bulk" or "list" too, so those count only without list headers.
PRECEDENCE_AUTO_REPLY = "auto_reply"
PRECEDENCE_BULK = frozenset({"bulk", "junk"})
AUTO_SUBMITTED_NO = "no"  # RFC 3834: the only value that means a human sent it

LIST_IDENTITY_LIMIT = 255  # characters of a list identity, escaped like any wire text

_BATV = re.compile(r"^(?:prvs|msprvs\d?)=[^=@]*=(.+)$|^btv1==[^=@]*==(.+)$")
_LIST_ID = re.compile(r"<([^<>]*)>")
_TOKEN_END = re.compile(r"[;(\s]")
# A return path's local part that is one opaque token (Amazon SES, some ESPs):
# long, with many digits. It says nothing about which list sent the mail.
_TOKEN_MIN_LENGTH = 12
_TOKEN_MIN_DIGITS = 4


def _strip_brackets(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address


def is_null_sender(envelope_from: str) -> bool:
    """The null return path of bounces and other notifications: "" or "<>"."""
    return _strip_brackets(envelope_from) == ""


# Bounded like envelope_domain(): a customer's return paths repeat all day, and each
# submission asked twice (robot local part, auto-reply) with a regular expression.
@functools.lru_cache(maxsize=4096)
def _localpart(envelope_from: str) -> str:
    address = _strip_brackets(envelope_from).lower()
    local = address.rsplit("@", 1)[0] if "@" in address else address
    batv = _BATV.match(local)
    if batv is not None:
        local = batv.group(1) or batv.group(2)
    plus = local.find("+")
    return local[:plus] if plus > 0 else local


def _header_token(value: str) -> str:
    """The first token of a structured header value, lower-case ("auto-replied; x=y" -> ...)."""
    if not value:
        return ""  # the usual case (and always so for a log replay): no such header
    return _TOKEN_END.split(value.strip(), maxsplit=1)[0].lower()


def _has_list_headers(headers: Headers) -> bool:
    return bool(headers.list_id.strip() or headers.list_unsubscribe.strip())


def _check_count(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def is_auto_reply(envelope_from: str, headers: Headers, recipient_count: int) -> bool:
    """Whether a message looks like an automatic reply sent without the null return path.

    Such a sender is a rejection daemon candidate: it answers (often forged)
    senders, so its replies fail, but that is misconfiguration, not spam.
    Only single-recipient messages count (a reply goes to one address).
    Auto-Submitted other than "no" decides alone; Precedence bulk/junk and
    robot local parts (postmaster, mailer-daemon, noreply, bounce, vacation
    ...) decide only when the message has no mailing-list headers.
    """
    _check_count("recipient_count", recipient_count)
    if recipient_count != 1 or is_null_sender(envelope_from):
        return False
    if not (headers.auto_submitted or headers.precedence or headers.list_id
            or headers.list_unsubscribe):
        # No header that says either way (every message read from a log): the return
        # path alone, as the questions below answer for empty headers.
        return is_robot_localpart(envelope_from)
    auto_submitted = _header_token(headers.auto_submitted)
    if auto_submitted and auto_submitted != AUTO_SUBMITTED_NO:
        return True
    precedence = _header_token(headers.precedence)
    if precedence == PRECEDENCE_AUTO_REPLY:
        return True
    if _has_list_headers(headers):
        return False
    return precedence in PRECEDENCE_BULK or _localpart(envelope_from) in AUTO_REPLY_LOCALPARTS


def is_robot_localpart(envelope_from: str) -> bool:
    """A return path of a robot (postmaster@, mailer-daemon@, noreply@ ...): no person
    writes from it, so what it sends is judged by its outcomes, not at submission."""
    return _localpart(envelope_from) in AUTO_REPLY_LOCALPARTS


# Bounded like _localpart(): asked at every recipient of every message (the policy
# server's RCPT), where the two questions apart cost two calls and a strip each time.
@functools.lru_cache(maxsize=4096)
def judged_by_outcomes(envelope_from: str) -> bool:
    """A bounce's or a robot's return path (`is_null_sender`, `is_robot_localpart`):
    what it sends shows nothing at submission."""
    return is_null_sender(envelope_from) or is_robot_localpart(envelope_from)


def is_list_like(
    recipient_count: int, failed_count: int, min_recipients: int, max_failure_share: float
) -> bool:
    """A message to many recipients that mostly work: list traffic, its failures discounted.

    True when `recipient_count >= min_recipients` and at most
    `max_failure_share` of the recipients failed. Raises ValueError for
    negative counts, more failures than recipients, `min_recipients < 1`
    or a share outside [0, 1].
    """
    _check_count("recipient_count", recipient_count)
    _check_count("failed_count", failed_count)
    if failed_count > recipient_count:
        raise ValueError(
            f"failed_count {failed_count} is more than recipient_count {recipient_count}"
        )
    if min_recipients < 1:
        raise ValueError(f"min_recipients must be at least 1, got {min_recipients}")
    if not 0.0 <= max_failure_share <= 1.0:
        raise ValueError(f"max_failure_share must be within [0, 1], got {max_failure_share}")
    if recipient_count < min_recipients:
        return False
    return failed_count / recipient_count <= max_failure_share


def _list_localpart(local: str) -> str:
    """A VERP/bounce-tagged local part reduced to the list's own ("list-return-12-u=x" -> ...)."""
    segments = local.split("-")
    kept = [segments[0].split("=", 1)[0]]
    if "=" not in segments[0]:
        for segment in segments[1:]:
            # A message number, or the recipient VERP-encoded as user=domain:
            # it and everything after it differ from message to message.
            if not segment or "=" in segment or any(c.isdigit() for c in segment):
                break
            kept.append(segment)
    local = "-".join(kept)
    digits = sum(c.isdigit() for c in local)
    if len(local) >= _TOKEN_MIN_LENGTH and digits >= _TOKEN_MIN_DIGITS:
        return "*"
    return local


def list_identity(envelope_from: str, headers: Headers) -> str:
    """Which list a message belongs to, the same for every message of one list.

    The List-Id (the part in angle brackets, RFC 2919) when there is one;
    otherwise the return path with BATV (`prvs=...=`), `+tag` and VERP or
    bounce numbers (`bounce-123-...`, `list-return-12-user=example.com`)
    stripped. "" for the null sender without a List-Id. Lower-case, escaped
    and length-capped like all wire text, so it can be stored as a key.
    """
    list_id = headers.list_id.strip()
    if list_id:
        bracketed = _LIST_ID.search(list_id)
        identity = (bracketed.group(1) if bracketed else list_id).strip().lower()
        if identity:
            return safe_text(identity, LIST_IDENTITY_LIMIT)
    if is_null_sender(envelope_from):
        return ""
    address = _strip_brackets(envelope_from).lower()
    if "@" not in address:
        return safe_text(_list_localpart(_localpart(address)), LIST_IDENTITY_LIMIT)
    domain = address.rsplit("@", 1)[1].rstrip(".")
    local = _list_localpart(_localpart(address))
    return safe_text(f"{local}@{domain}", LIST_IDENTITY_LIMIT)




@functools.lru_cache(maxsize=64)
def _parse_networks(texts: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    for text in texts:  # one at a time, to name the bad one
        try:
            networks((text,))
        except ValueError as exc:
            raise ValueError(f"own_networks: {text!r} is not a network: {exc}") from None
    return networks(texts)


def mentions_own_network(client_addr: str, own_networks: Sequence[str]) -> bool:
    """Whether a client address lies in one of our own networks (CIDR strings).

    On the MX this is one of our own customers arriving from outside, i.e.
    sending straight to the Internet. An unparsable client address (Postfix
    says "unknown") is not ours. Raises ValueError for a bad network.
    """
    networks = _parse_networks(tuple(own_networks))
    address = parse_address(client_addr)
    return address is not None and any(address in network for network in networks)
