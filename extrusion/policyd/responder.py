"""From a policy request to an access(5) action: ask the engine, translate its decision.

Runs on the reactor thread for every request, so it only calls `decide()`,
which answers from memory. When there is no engine (the store could not be
opened yet) or the engine raises, the configured default action is the
answer — Postfix keeps flowing, and the failure is logged once per burst.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol

from extrusion.burstlog import BurstLog, exception_text
from extrusion.policyd import constants as c
from extrusion.policyd.metrics import Metrics
from extrusion.policyd.request import PolicyRequest
from extrusion.scoring.api import EngineAPI
from extrusion.scoring.decisions import HELO_NOTE
from extrusion.scoring.events import Action, Decision, Stage
from extrusion.scoring.helo import safe_text

log = logging.getLogger("extrusion.policyd")

# protocol_state -> (engine stage, whether this request consumes budget).
# Recipients are counted at RCPT, one per request; messages at END-OF-MESSAGE,
# whose recipient_count is what Postfix accepted. DATA is asked but not counted,
# so a message answered at both DATA and END-OF-MESSAGE counts once.
_STAGES: dict[str, tuple[Stage, bool]] = {
    c.STATE_CONNECT: (Stage.CONNECT, False),
    c.STATE_EHLO: (Stage.HELO, False),
    c.STATE_HELO: (Stage.HELO, False),
    c.STATE_MAIL: (Stage.MAIL, False),
    c.STATE_RCPT: (Stage.RCPT, True),
    c.STATE_DATA: (Stage.DATA, False),
    c.STATE_EOM: (Stage.EOM, True),
}

_DEFAULT_TEXT = {
    Action.TEMPFAIL: "Too much mail from you for now, try again later",
    Action.HOLD: "held for review by extrusion",
    Action.REJECT: "Mail from you is refused; please contact your provider",
}

# Anything that could end the reply line or confuse Postfix's parser.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


class EngineSource(Protocol):
    """Whatever holds the engine; `engine` is None while the store cannot be opened."""

    @property
    def engine(self) -> EngineAPI | None: ...


def _clean(text: str) -> str:
    # SMTP replies are ASCII unless the client asked for SMTPUTF8, which a policy
    # server cannot know; control characters would end the reply line.
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    return _UNSAFE.sub(" ", ascii_text).strip()[: c.MAX_REPLY_TEXT]


def _enhanced(code: str, klass: str, fallback: str) -> str:
    return code if code.startswith(klass) else fallback


def action_for(decision: Decision) -> str:
    """The access(5) action line (without `action=`) for an engine decision."""
    act = decision.action
    if act is Action.CONTINUE:
        return c.DUNNO
    return _action_line(act, decision.enhanced_code, decision.text)


# A sender over its budget is answered at each of its recipients, in the same few
# words (the reason, which varies, goes to the log, not to the client): cleaned once.
@functools.lru_cache(maxsize=1024)
def _action_line(act: Action, enhanced_code: str, text: str) -> str:
    text = _clean(text) or _DEFAULT_TEXT[act]
    if act is Action.TEMPFAIL:
        return f"{c.DEFER_IF_PERMIT} {_enhanced(enhanced_code, '4.', c.TEMPFAIL_ENHANCED)} {text}"
    if act is Action.HOLD:
        return f"{c.HOLD} {text}"
    return f"{c.REJECT} {_enhanced(enhanced_code, '5.', c.REJECT_ENHANCED)} {text}"


class Responder:
    """Answers policy requests; one per daemon, shared by every connection."""

    def __init__(
        self,
        source: EngineSource,
        default_action: str,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.source = source
        self.default_action = default_action
        self.metrics = metrics
        self.clock = clock
        self._errors = BurstLog(log, "policy decision", clock)
        self._by_state = {s: metrics.requests.labels(s.lower()) for s in _STAGES}
        self._other_state = metrics.requests.labels("other")
        self._default_counter = metrics.decisions.labels("default")
        self._dunno = metrics.decision_by_action[c.DUNNO]
        #: Told (sender, queue id) whenever we answer HOLD for a message with a queue id.
        self.on_hold: Callable[[str, str], None] | None = None

    def answer(self, req: PolicyRequest) -> str:
        """The action for one request; never raises."""
        attrs = req.attrs  # read once: the request's properties cost a call each
        state = attrs.get("protocol_state", "").upper()
        staged = _STAGES.get(state)
        if staged is None:
            # VRFY, ETRN and states newer than this code: nothing to judge.
            self._other_state.value += 1
            self._dunno.value += 1
            return c.DUNNO
        # The counters' cells are bumped here, not through Cell.inc(): one call less each.
        self._by_state[state].value += 1
        stage, counted = staged
        engine = self.source.engine
        if engine is None:
            self._default_counter.value += 1
            return self.default_action
        t0 = time.perf_counter()
        client = attrs.get("client_address", "")
        helo = attrs.get("helo_name", "")
        client_name = req.client_name
        envelope_from = attrs.get("sender", "")
        try:
            sender = engine.sender_key(client_addr=client,
                                       sasl_user=attrs.get("sasl_username", ""))
            decision = engine.decide(
                sender,
                stage,
                1 if stage is Stage.RCPT else max(req.recipient_count, 1),
                self.clock(),
                count=counted,
                helos=(helo,) if helo else (),
                client_addr=client,
                envelope_from=envelope_from,
                recipient=attrs.get("recipient", ""),
                client_name=client_name,
            )
        except Exception as exc:  # any engine failure means: fail open
            self._errors.failed(exception_text(exc))
            self.metrics.store_errors.labels("decide").inc()
            self._default_counter.value += 1
            return self.default_action
        self._errors.recovered()
        if decision.action is Action.CONTINUE:  # nearly every answer: no text to build
            self._dunno.value += 1
            self.metrics.latency.observe(time.perf_counter() - t0)
            if stage is Stage.EOM and helo:
                return self._helo_info(engine, helo, client, client_name,
                                       envelope_from) or c.DUNNO
            return c.DUNNO
        return self._restrain(decision, state, sender, attrs.get("queue_id", ""), t0)

    def _restrain(self, decision: Decision, state: str, sender: str, queue_id: str,
                  t0: float) -> str:
        """The action for a decision that is no CONTINUE (a few in a thousand): counted,
        the hold queue told, logged."""
        action = action_for(decision)
        verb = action.split(" ", 1)[0]
        self.metrics.decision_by_action[verb].inc()
        self.metrics.latency.observe(time.perf_counter() - t0)
        if verb == c.HOLD and queue_id and self.on_hold is not None:
            self.on_hold(sender, queue_id)
        if log.isEnabledFor(logging.INFO):  # the arguments' cleaning is not free
            log.info(
                "policy %s sender=%s queue_id=%s state=%s action=%s reason=%s",
                state, safe_text(sender), safe_text(queue_id or "-"),
                decision.state.value, verb, safe_text(decision.reason or "-"),
            )
        return action

    def _helo_info(self, engine: EngineAPI, helo: str, client: str, client_name: str,
                   envelope_from: str) -> str:
        """`INFO` naming the HELO's anomalies, for a message the engine lets through.

        Postfix logs it with the queue id and `helo=<…>`: the log then holds the
        HELO evidence the milter gave the engine, and a replay of it judges the
        sender as the live engine did. A clean HELO adds no line."""
        try:
            note = engine.helo_note((helo,), client, client_name, envelope_from)
        except Exception as exc:  # the answer stands without the note
            self._errors.failed(exception_text(exc))
            return ""
        return f"{c.INFO} {HELO_NOTE}{note}" if note else ""
