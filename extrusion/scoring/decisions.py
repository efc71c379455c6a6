"""The engine's answers: SMTP codes and the texts clients and operators read.

Client texts name a reason an operator can grep for ("extrusion: too many
delivery failures") and never internal details (scores, thresholds, notes);
`reason` carries those for the operator's log.
"""

from __future__ import annotations

from extrusion.scoring.events import Action, Decision, State

SMTP_OK = 250
ENHANCED_OK = "2.0.0"
SMTP_TEMPFAIL = 451
ENHANCED_TEMPFAIL = "4.7.1"  # delivery not authorized (temporarily): rate limited
SMTP_REJECT = 550
ENHANCED_REJECT = "5.7.1"  # delivery not authorized: refused

# Finding kind -> the phrase shown to clients and in the audit trail.
PHRASES = {
    "too_many_failures": "too many delivery failures",
    "failed_recipients": "too many delivery failures",
    "spam_rejections": "mail refused as spam by remote sites",
    "virus_rejections": "mail refused as a virus by remote sites",
    "helo_anomalies": "suspicious HELO",
    "mailing_lists": "too many mailing lists",
    "spam_verdicts": "mail judged as spam",
    "own_network_inbound": "own customer range seen from outside",
    "own_network_refused": "own customer range refused or judged spam from outside",
    "postscreen_verdicts": "refused by postscreen as a bot",
    "throttled_refusals": "kept sending while rate limited",
    "freemail_unauthenticated": "freemail sender without authentication",
    "unauthenticated_from_sasl_address": "unauthenticated mail from an authenticating customer",
    "envelope_domains": "many sender domains",
    "recipient_spread": "recipients spread over many domains",
    "probation": "new sending pattern on probation",
    "direct_to_mx": "mail sent directly to the Internet, bypassing the smarthost",
}
DEFAULT_PHRASE = "suspicious sending pattern"
# The text the policy server has Postfix log (an INFO action) for a message whose HELO is
# suspect, and the log parser looks for: the log then carries the milter's HELO evidence.
HELO_NOTE = "extrusion: suspicious HELO: "
# The start of the reply to a rate-limited recipient, as the log shows it.
RATE_LIMITED = "extrusion: rate limited ("
OPERATOR_PHRASE = "by decision of the mail administrator"


def phrase(kind: str) -> str:
    return PHRASES.get(kind, DEFAULT_PHRASE)


def proceed(state: State, score: float, reason: str = "") -> Decision:
    return Decision(Action.CONTINUE, state, score, SMTP_OK, ENHANCED_OK, "", reason)


def rate_limited(state: State, score: float, why: str, reason: str) -> Decision:
    return Decision(
        Action.TEMPFAIL, state, score, SMTP_TEMPFAIL, ENHANCED_TEMPFAIL,
        f"{RATE_LIMITED}{why}), try again later", reason,
    )


def hold(state: State, score: float, why: str, reason: str) -> Decision:
    return Decision(
        Action.HOLD, state, score, SMTP_OK, ENHANCED_OK, f"extrusion: held for review ({why})",
        reason,
    )


def refuse(state: State, score: float, why: str, reason: str) -> Decision:
    return Decision(
        Action.REJECT, state, score, SMTP_REJECT, ENHANCED_REJECT,
        f"extrusion: sending refused ({why})", reason,
    )


def bad_helo(state: State, score: float, reason: str) -> Decision:
    return Decision(
        Action.REJECT, state, score, SMTP_REJECT, ENHANCED_REJECT,
        "extrusion: HELO/EHLO name rejected (suspicious HELO)", reason,
    )
