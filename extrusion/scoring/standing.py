"""A sender's standing over time: a forwarder, a list server, or neither.

Two kinds of legitimate host look like spammers to a rule that sees one
message or one hour: a forwarder passes on spam that our filter refuses, and
a list server sends several lists. What tells them apart from a bot is time
and working deliveries, both read from the sender's baseline
(`baseline.py`, persisted in `sender_baselines`), never from what one
message claims:

- deliveries work: enough outcomes seen, and nearly all of them delivered;
- a forwarder: an established history spanning hours, most of its mail
  someone else's (original senders' domains, SRS), from several unrelated
  domains;
- a list server: its list identities recur over time; a host that shows
  more than a few identities never seen before is rotating them, as a
  spammer posing as lists does, and gets no benefit of the doubt.

Pure functions of a baseline and a time: no clock, no store.
"""

from __future__ import annotations

from extrusion.scoring.baseline import HOUR, Baseline
from extrusion.scoring.forwarding import foreign_envelope, srs_origin
from extrusion.scoring.helo import address_domain, registered_domain

# Outcomes needed before "its deliveries work" may be said at all.
MIN_OUTCOMES = 10
# Share of those delivered: a list's dead addresses and a forwarder's dead mailboxes
# stay well below a fifth; a bot's invented addresses do not.
WORKING_SHARE = 0.8
# A forwarder's history: this many messages over at least this long ...
FORWARDER_MIN_MESSAGES = 20
FORWARDER_MIN_SECONDS = 2 * HOUR
# ... most of them someone else's mail, from at least this many envelope domains.
FORWARDER_FOREIGN_SHARE = 0.5
FORWARDER_MIN_DOMAINS = 4
# A list identity is proven once posted again at least this long after its first post.
LIST_PROVEN_SECONDS = HOUR
# New (unproven) list identities a host with working deliveries may show in the
# window before it counts as rotating identities: a list server's handful of lists
# on its first day stays under it, a spammer's one identity per mailshot does not.
MAX_UNPROVEN_LISTS = 4


def deliveries_work(b: Baseline) -> bool:
    """Enough outcomes, nearly all delivered (failures discounted as forwarded excluded)."""
    total = b.delivered + b.failed
    return total >= MIN_OUTCOMES and b.delivered >= WORKING_SHARE * total


def is_forwarder(b: Baseline, now: float) -> bool:
    """A stable forwarder identity: long history, mostly foreign mail, deliveries working."""
    return (
        b.messages >= FORWARDER_MIN_MESSAGES
        and b.since > 0.0
        and now - b.since >= FORWARDER_MIN_SECONDS
        and b.foreign >= FORWARDER_FOREIGN_SHARE * b.messages
        and len(b.domains) >= FORWARDER_MIN_DOMAINS
        and deliveries_work(b)
    )


def list_proven(b: Baseline, identity: str) -> bool:
    """The identity was posted before and again at least LIST_PROVEN_SECONDS later."""
    seen = b.lists.get(identity)
    return seen is not None and seen[1] - seen[0] >= LIST_PROVEN_SECONDS


def is_list_server(b: Baseline, identities: list[str]) -> bool:
    """Whether a host posting `identities` (those in the window) is a list server."""
    unproven = sum(1 for i in identities if not list_proven(b, i))
    return deliveries_work(b) and unproven <= MAX_UNPROVEN_LISTS


def forwarded_reason(b: Baseline, envelope_from: str, client_name: str, origin: str,
                     now: float) -> str:
    """Why a message counts as forwarded ("" when it does not), for the report.

    `origin` is what the milter read from the Received chain ("" from the log).
    A known forwarder's own mail (its envelope domain is its reverse name's)
    is not discounted.
    """
    if origin:
        return f"received from {origin}"
    if srs := srs_origin(envelope_from, client_name):
        return f"SRS from {srs}"
    if not is_forwarder(b, now):
        return ""
    if client_name and not foreign_envelope(envelope_from, client_name):
        return ""
    domain = registered_domain(address_domain(envelope_from)) or "-"
    return f"forwarder, original sender {domain}"
