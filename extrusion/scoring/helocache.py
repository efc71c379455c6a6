"""HELO verdicts behind a cache, as the judge and the policy server ask for them.

A customer says the same HELO all day, and `helo_anomalies()` parses names
against the public suffix list (with IDNA encoding): the verdict is cached
on what it depends on and nothing more.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import repeat

from extrusion.scoring.helo import HeloFinding, helo_anomalies

HELO_CACHE = 16384  # distinct (HELO, client, MAIL FROM domain) verdicts remembered
TAIL_CACHE = 4096  # recipient domains whose last two labels are remembered
SESSION_CACHE = 4096  # policy sessions whose HELO verdict is remembered (then all forgotten)

# A session's (HELOs, client address, client name, MAIL FROM, own domains) -> its HELOs
# lowered (as recipients are compared with them) and its verdict without recipients.
_Session = tuple[tuple[str, ...], str, str, str, tuple[str, ...]]
_sessions: dict[_Session, tuple[tuple[str, ...], tuple[HeloFinding, ...]]] = {}


def judge_helos(
    helos: tuple[str, ...], client_addr: str, client_name: str, envelope_from: str,
    recipients: Sequence[str], own_domains: tuple[str, ...], confirmed: tuple[str, ...] = (),
) -> tuple[HeloFinding, ...]:
    """`helo_anomalies()` behind a cache: a customer says the same HELO all day.

    Only what the verdict depends on goes into the cache key: the MAIL FROM
    domain (not the whole address), only those recipients whose domain could
    be the HELO's registered domain (the HELO ends in its last two labels), and
    the client's address only when a HELO may be an address literal: a name is
    never compared with it. Every message of the policy stream comes from a new
    client address (dynamic pools), so with the address in the key each one's
    first recipient missed and parsed its HELO against the public suffix list
    again (benchmarks/policyd.py --in-process). The key's parts are cached in
    turn by what repeats (the HELO, the MAIL FROM): a call asked at every
    recipient and at END-OF-MESSAGE runs no Python of its own for them.
    """
    lowered, literal = _helo_shape(helos)
    client_key = client_addr if literal else ""
    sender_key = _sender_key(envelope_from)
    # One recipient at each RCPT, nearly never in the HELO's domain.
    rcpts: tuple[str, ...] = ()
    if len(recipients) == 1:  # the policy server's RCPT: no list to build
        rcpt = recipients[0]
        if (tail := _tail(rcpt)) and any(map(str.endswith, lowered, repeat(tail))):
            rcpts = (rcpt,)
    elif recipients and (matching := [r for r in recipients if (tail := _tail(r))
                                      and any(map(str.endswith, lowered, repeat(tail)))]):
        rcpts = tuple(sorted(set(matching)))
    return _cached_helos(helos, client_key, client_name, sender_key, rcpts, own_domains,
                         confirmed)


# The two below are keyed by what repeats all day (a customer's HELO, its MAIL FROM),
# not by the client address, which is new for nearly every message.
@functools.lru_cache(maxsize=HELO_CACHE)
def _helo_shape(helos: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """The HELOs as recipients' domains are compared with them, and whether one may
    be an address literal (then the verdict depends on the client's address)."""
    lowered = tuple(h.lower().rstrip(".") for h in helos if isinstance(h, str))
    return lowered, any(map(_may_be_literal, helos))


@functools.lru_cache(maxsize=HELO_CACHE)
def _sender_key(envelope_from: str) -> str:
    """What of the MAIL FROM a HELO verdict depends on: its domain."""
    _, at, domain = envelope_from.rpartition("@")
    return f"postmaster@{domain.lower()}" if at else envelope_from.lower()


def session_helos(helos: tuple[str, ...], client_addr: str, client_name: str,
                  envelope_from: str, recipient: str,
                  own_domains: tuple[str, ...]) -> tuple[HeloFinding, ...]:
    """`judge_helos()` for one policy request (one recipient, or none: ""), remembered
    for its session.

    A message's requests (each RCPT, then END-OF-MESSAGE) ask of the same HELO,
    client and MAIL FROM: one dict look-up answers them all, where `judge_helos()`
    built its key anew from three caches at each. Only a recipient whose domain the
    HELO could name changes the verdict; that rare request takes the general path.
    """
    key = (helos, client_addr, client_name, envelope_from, own_domains)
    known = _sessions.get(key)
    if known is None:
        if len(_sessions) >= SESSION_CACHE:
            _sessions.clear()  # a session's requests come within seconds: no LRU needed
        lowered = _helo_shape(helos)[0]
        found = judge_helos(helos, client_addr, client_name, envelope_from, (), own_domains)
        known = _sessions[key] = (lowered, found)
    lowered, found = known
    if recipient and (tail := _tail(recipient)) and any(
            map(str.endswith, lowered, repeat(tail))):
        return judge_helos(helos, client_addr, client_name, envelope_from, (recipient,),
                           own_domains)
    return found


def helo_note(helos: tuple[str, ...], client_addr: str, client_name: str, envelope_from: str,
              own_domains: tuple[str, ...]) -> str:
    """The kinds of a session's HELO anomalies ("" for none), as the policy server has
    the MTA log them: known at END-OF-MESSAGE without the recipients."""
    found = session_helos(helos, client_addr, client_name, envelope_from, "", own_domains)
    return _note(found) if found else ""


@functools.lru_cache(maxsize=TAIL_CACHE)
def _note(found: tuple[HeloFinding, ...]) -> str:
    """A verdict's kinds as the note says them: one session's anomalies, seen all day."""
    return ", ".join(sorted({f.kind for f in found}))


def _may_be_literal(helo: str) -> bool:
    """False only for a HELO `parse_literal()` refuses at its first look (most names):
    the same test, so that no literal ever loses the client address it is judged by."""
    if not isinstance(helo, str):
        return True  # whatever it is, the judgement decides; keep the key whole
    text = helo.strip()
    return bool(text) and len(text) <= 64 and (text[0] in "[:" or text[0].isdigit()
                                                or ":" in text)


def _tail(address: str) -> str:
    return domain_tail(address.rpartition("@")[2])


@functools.lru_cache(maxsize=TAIL_CACHE)
def domain_tail(domain: str) -> str:
    """The last two labels of a domain; cached, as recipients' domains repeat all day."""
    domain = domain.lower().rstrip(".>")
    return ".".join(domain.rsplit(".", 2)[-2:])


@functools.lru_cache(maxsize=HELO_CACHE)
def _cached_helos(
    helos: tuple[str, ...], client_addr: str, client_name: str, envelope_from: str,
    recipients: tuple[str, ...], own_domains: tuple[str, ...], confirmed: tuple[str, ...],
) -> tuple[HeloFinding, ...]:
    return tuple(helo_anomalies(helos, client_addr, client_name=client_name,
                                envelope_from=envelope_from, recipients=recipients,
                                own_domains=own_domains, confirmed=confirmed))
