"""From the engine's Decision to the SMTP reply the client sees.

The engine supplies the code, enhanced code and text; this module makes sure
they are well formed for the action (a tempfail is 4xx, a reject 5xx) and
safe for libmilter (one printable ASCII line, no `%`), falling back to the
constants otherwise. The client never sees the operator's reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from extrusion.milter import constants as c
from extrusion.milter.text import reply_text
from extrusion.scoring.events import Action, Decision

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply for smfi_setreply: code, enhanced code, text."""

    code: str
    enhanced: str
    text: str


def _pick(decision: Decision, klass: str, code: int, enhanced: str, text: str) -> Reply:
    got_code = str(decision.smtp_code)
    if not (len(got_code) == 3 and got_code.startswith(klass)):
        got_code = str(code)
    got_enhanced = decision.enhanced_code
    if not (_ENHANCED.fullmatch(got_enhanced) and got_enhanced.startswith(klass)):
        got_enhanced = enhanced
    return Reply(got_code, got_enhanced, reply_text(decision.text or text, c.MAX_REPLY_TEXT))


def for_decision(decision: Decision) -> Reply | None:
    """The reply for a refusing decision; None for continue and hold (they accept)."""
    if decision.action is Action.TEMPFAIL:
        return _pick(decision, "4", c.TEMPFAIL_CODE, c.TEMPFAIL_ENHANCED, c.TEMPFAIL_TEXT)
    if decision.action is Action.REJECT:
        return _pick(decision, "5", c.REJECT_CODE, c.REJECT_ENHANCED, c.REJECT_TEXT)
    return None


ERROR_REPLY = Reply(str(c.ERROR_CODE), c.ERROR_ENHANCED, c.ERROR_TEXT)
