"""The engine's answers: SMTP codes and the texts clients and operators read.

Client texts name a reason an operator can grep for ("extrusion: too many
delivery failures") and never internal details (scores, thresholds, notes);
`reason` carries those for the operator's log.
"""

from __future__ import annotations

from extrusion.scoring.events import Action, Decision, State
from extrusion.scoring.wording import DEFAULT_PHRASE as DEFAULT_PHRASE  # the words of each
from extrusion.scoring.wording import phrase as phrase  # finding kind: one table, there

SMTP_OK = 250
ENHANCED_OK = "2.0.0"
SMTP_TEMPFAIL = 451
ENHANCED_TEMPFAIL = "4.7.1"  # delivery not authorized (temporarily): rate limited
SMTP_REJECT = 550
ENHANCED_REJECT = "5.7.1"  # delivery not authorized: refused

# The text the policy server has Postfix log (an INFO action) for a message whose HELO is
# suspect, and the log parser looks for: the log then carries the milter's HELO evidence.
HELO_NOTE = "extrusion: suspicious HELO: "
# The start of the reply to a rate-limited recipient, as the log shows it.
RATE_LIMITED = "extrusion: rate limited ("
OPERATOR_PHRASE = "by decision of the mail administrator"


def proceed(state: State, score: float, reason: str = "") -> Decision:
    if score == 0.0 and not reason:
        return _PROCEED[state]  # a sender without evidence, as most are: made once
    return Decision(Action.CONTINUE, state, score, SMTP_OK, ENHANCED_OK, "", reason)


# Decisions are frozen: one may answer many senders.
_PROCEED = {s: Decision(Action.CONTINUE, s, 0.0, SMTP_OK, ENHANCED_OK, "", "") for s in State}


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
