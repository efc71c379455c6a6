"""What a sender shows at submission, before any outcome: small questions, each a finding.

Every one uses only what the milter, a Postfix policy request and the log
all have for a message (envelope sender, recipients, client address,
whether it authenticated), so the live path and `replay` judge alike. Each
kind counts once, then again only after a pause of four half-lives in
showing it (the HELO memory): a
policy request at RCPT and the log's report of the same message add nothing
twice, and a habit shown all day is one piece of evidence.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

from extrusion.scoring.helo import address_domain, registered_domain
from extrusion.scoring.providers import provider_family

MAX_SASL_ADDRESSES = 100_000  # client addresses remembered as carrying SASL mail
MAX_DOMAINS = 1_000  # distinct recipient domains per sender per hour kept at most


# Asked of every submission (live and replayed) for the sender keys of the day: one
# look-up instead of a call and two prefix tests; bounded, as bots' keys are many.
@functools.lru_cache(maxsize=16384)
def authenticated(sender_key: str) -> bool | None:
    """Whether a sender key's mail was authenticated; None for `customer:` (either)."""
    if sender_key.startswith("sasl:"):
        return True
    if sender_key.startswith("ip:"):
        return False
    return None


# Bounded: a bot's return paths are new every time. Two calls per submission (the
# engine's and the submission evidence's) parsed the address and ran the suffix list twice.
@functools.lru_cache(maxsize=4096)
def envelope_domain(envelope_from: str) -> str:
    """The registered domain of an envelope sender ("" for <> or none)."""
    domain = address_domain(envelope_from)
    return (registered_domain(domain) or domain) if domain else ""


def freemail_unauthenticated(domain: str, is_authenticated: bool | None) -> str:
    """The provider family when unauthenticated mail claims a big freemail sender.

    Their customers submit through the provider's own servers (authenticated);
    a PC that puts @yahoo.com on port-25 mail to its ISP's relay is mostly a bot
    forging its senders."""
    if is_authenticated is not False or not domain:
        return ""
    return provider_family(domain) or ""


class SaslAddresses:
    """Client addresses that recently carried SASL-authenticated mail (bounded LRU)."""

    def __init__(self, memory: float, limit: int = MAX_SASL_ADDRESSES) -> None:
        self.memory = memory
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def saw(self, client_addr: str, now: float) -> None:
        if not client_addr:
            return
        self._seen[client_addr] = now
        self._seen.move_to_end(client_addr)
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def recent(self, client_addr: str, now: float) -> bool:
        t = self._seen.get(client_addr)
        return t is not None and 0.0 <= now - t <= self.memory


def too_many_envelope_domains(distinct: int, limit: int) -> bool:
    """More distinct envelope-sender domains in the window than a business uses."""
    return distinct > limit


def recipient_spread(domains_this_hour: int, typical_hour: float, min_domains: int,
                     factor: float) -> bool:
    """Recipient domains in an hour far above what this sender typically sends.

    `typical_hour` counts recipients (an upper bound of their domains). A sender
    with no finished hour of history has nothing to depart from: volume alone is
    no evidence (a list's first post goes to hundreds of domains)."""
    return (typical_hour > 0.0 and domains_this_hour > min_domains
            and domains_this_hour > factor * typical_hour)
