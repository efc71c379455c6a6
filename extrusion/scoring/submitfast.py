"""A submission's evidence and learning in one pass, for the common sender.

`Recorder.submission` asked `SenderBook.shown` (→ `Judge.submitted`) and then
taught the baseline (`recording._learn`): some twenty calls a message, most
answering "nothing to see" (not a robot, no freemail, no SASL address, the same
envelope domain as ever). `shown_and_learnt` asks the pure preconditions first
and, when the message is not the common case, does nothing and says so: the
caller then takes the general path, whose answers this one must equal
(tests/test_submitfast.py compares both over varied senders).
"""

from __future__ import annotations

import functools
import sys

from extrusion.scoring import shown
from extrusion.scoring.events import Submission
from extrusion.scoring.forwarding import foreign_envelope
from extrusion.scoring.helocache import domain_tail
from extrusion.scoring.heuristics import is_null_sender, is_robot_localpart
from extrusion.scoring.judge import Judge, weigh_shown
from extrusion.scoring.kinds import Kind
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.providers import provider_family
from extrusion.scoring.shown import (
    SaslAddresses,
    authenticated,
    envelope_domain,
    recipient_spread,
)


# Bounded like envelope_domain(): a customer's return paths repeat all day, a bot's
# are new every time. One look-up for what three calls each parsed again.
@functools.lru_cache(maxsize=4096)
def envelope_facts(envelope_from: str) -> tuple[bool, bool, str, str]:
    """(null sender, judged by outcomes (null or a robot's), registered domain, the
    address as one shared string) of an envelope sender."""
    null = is_null_sender(envelope_from)
    return (null, null or is_robot_localpart(envelope_from), envelope_domain(envelope_from),
            sys.intern(envelope_from))


def shown_and_learnt(judge: Judge, sasl: SaslAddresses, mem: SenderMemory,
                     event: Submission, now: float) -> bool:
    """`SenderBook.shown(...)` then `recording._learn` for a message from neither a
    robot nor <>, not in mx mode, not an unauthenticated freemail or SASL address:
    False (and nothing done) for any other."""
    envelope_from = event.envelope_from
    _null, judged, domain, _ = envelope_facts(envelope_from)
    if judged or judge.mx:
        return False
    auth = authenticated(mem.key)
    client_addr = event.client_addr
    if auth is False and ((domain and provider_family(domain))
                          or sasl.recent(client_addr, now)):
        return False  # a finding from the start: the general path's
    if auth and client_addr:
        sasl.saw(client_addr, now)
    recipients = event.recipients
    found: list[tuple[str, float, str]] = []
    limit = judge.envelope_domains
    # count(), then add() unless "" or above the limit (the count after), in one call.
    n, _grew = mem.env_domains.add_all((domain,) if domain else (), now, limit + 1)
    if n > limit:  # shown.too_many_envelope_domains
        found.append((Kind.ENVELOPE_DOMAINS, judge.weights.envelope_domains, f"{n} domains"))
    # Most messages have one recipient: its domain without a list comprehension's frame.
    tails = ((domain_tail(recipients[0].rpartition("@")[2]),) if len(recipients) == 1
             else [domain_tail(r.rpartition("@")[2]) for r in recipients[:shown.MAX_DOMAINS]])
    domains, grew = mem.rcpt_domains.add_all(tails, now, shown.MAX_DOMAINS)
    b = mem.baseline
    if grew and recipient_spread(domains, b.typical_hour, judge.spread_domains,
                                 judge.spread_factor):
        found.append((Kind.RECIPIENT_SPREAD, judge.weights.recipient_spread,
                      f"{domains} recipient domains"))
    if found:
        weigh_shown(judge, mem, found, now)
    if mem.probation is None and b.messages >= judge.baseline_messages:
        now_rcpts, typical = b.this_hour(now) + len(recipients), b.typical_hour
        # departures() finds nothing without an unauthenticated message from a sender that
        # authenticated before, or an hour above its typical one (a new envelope domain
        # alone is no departure): nearly every message of an established sender.
        if (auth is False and b.authenticated > 0) or (
                typical > 0.0 and now_rcpts > judge.volume_min
                and now_rcpts > judge.volume_factor * typical):
            departed = b.departures(
                domain=domain, authenticated=auth, recipients_now=now_rcpts,
                volume_factor=judge.volume_factor, volume_min=judge.volume_min)
            if departed:
                judge.probation.enter(
                    mem, "departs from its own history: " + "; ".join(departed), now)
    # recording._learn's, with what was asked above.
    b.learn(now, event.helos[-1] if event.helos else "", domain, auth, len(recipients))
    if event.headers.forwarded_from or foreign_envelope(envelope_from, event.client_name):
        b.learn_foreign()
    return True
