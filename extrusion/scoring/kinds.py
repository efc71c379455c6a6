"""The kinds of finding the engine notes on a sender, by one name each.

A finding is stored as `{kind: {count, weight, examples, first, last, ...}}`
(`SenderMemory.note`); the values here are those keys, so findings stored
before this enum existed, the JSON reports and the CLI read the same. The
words for each kind (the reason clients and operators read, the report's
sentence) are in `extrusion.scoring.wording`.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    # Delivery failures (extrusion.scoring.judge).
    FAILED_RECIPIENTS = "failed_recipients"
    TOO_MANY_FAILURES = "too_many_failures"
    SPAM_REJECTIONS = "spam_rejections"
    VIRUS_REJECTIONS = "virus_rejections"
    THROTTLED_REFUSALS = "throttled_refusals"
    # Facts that explain or discount failures.
    MISCONFIGURED = "misconfigured"  # a rejection daemon: auto-replies without <>
    MAILING_LISTS = "mailing_lists"
    LIST_FAILURES_DISCOUNTED = "list_failures_discounted"
    FORWARDED_DISCOUNTED = "forwarded_discounted"
    # What a sender shows at submission (extrusion.scoring.shown, helocache).
    HELO_ANOMALIES = "helo_anomalies"
    FREEMAIL_UNAUTHENTICATED = "freemail_unauthenticated"
    UNAUTHENTICATED_FROM_SASL_ADDRESS = "unauthenticated_from_sasl_address"
    ENVELOPE_DOMAINS = "envelope_domains"
    RECIPIENT_SPREAD = "recipient_spread"
    PROBATION = "probation"  # a new sending pattern (extrusion.scoring.probation)
    # Seen at our MX (mx mode: extrusion.scoring.judge, logjudge).
    SPAM_VERDICTS = "spam_verdicts"
    OWN_NETWORK_INBOUND = "own_network_inbound"
    OWN_NETWORK_REFUSED = "own_network_refused"
    POSTSCREEN_VERDICTS = "postscreen_verdicts"
    # Sampled flow records (extrusion.flows).
    DIRECT_TO_MX = "direct_to_mx"


# What mass-mailing worms leave: a report files their sender under "virus".
VIRUS_KINDS = frozenset({Kind.HELO_ANOMALIES, Kind.VIRUS_REJECTIONS})
# Kinds that say something even when they added nothing to the score (the trigger fired
# on a score already above it; a rejection daemon; list failures set aside).
FACT_KINDS = frozenset({Kind.TOO_MANY_FAILURES, Kind.MISCONFIGURED,
                        Kind.LIST_FAILURES_DISCOUNTED, Kind.MAILING_LISTS,
                        Kind.FORWARDED_DISCOUNTED})
