"""Decisions: what the MTA should do with a sender at a stage, from memory only.

`decide()` answers under the book's lock with no store access on the MTA's
path; it must stay fast (benchmarks/engine.py: well over 100,000 a second).
A rate budget spent here is queued for the store only for the restricted
senders whose budgets the hosts share (shared.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from extrusion.config import Limits
from extrusion.scoring import decisions as answer
from extrusion.scoring.book import SenderBook
from extrusion.scoring.events import Action, Decision, Stage, State
from extrusion.scoring.helocache import session_helos
from extrusion.scoring.judge import judge_helos
from extrusion.scoring.kinds import Kind
from extrusion.scoring.limits import budget
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.pins import pin_of, pin_reason
from extrusion.scoring.shared import restricted, use_bucket
from extrusion.scoring.state import PIN_STATES
from extrusion.scoring.transitions import evaluate


class Decider:
    """Answers `EngineAPI.decide()` from the book."""

    def __init__(self, book: SenderBook) -> None:
        self.book = book
        # budget()'s answers for the limits classes they were asked of (_budget).
        self._budgets_of: Mapping[str, Limits] | None = None
        self._budgets: dict[tuple[str, State, bool], tuple[str, Limits]] = {}

    def decide(self, sender: str, stage: Stage, recipient_count: int, now: float, count: bool,
               helos: tuple[str, ...], client: tuple[str, str], envelope_from: str,
               recipient: str) -> tuple[Decision, bool]:
        """The decision, and whether a state may have changed (listeners to be told)."""
        book = self.book
        changed = False
        with book.lock:
            mem = book.senders.get(sender)
            if mem is None and (book.overrides or (count and stage in (Stage.RCPT, Stage.EOM))):
                mem = book.mem(sender, now, client[0])
                changed = True
            elif mem is not None and mem.state is not State.OK:
                changed = evaluate(book, mem, now) is not None  # the evidence may have decayed
            if count and stage is Stage.RCPT and mem is not None and recipient:
                changed = self._shown(mem, now, helos, client, envelope_from,
                                      recipient) or changed
            # Nothing below moves a pin: the one read here is the one in force.
            # Most senders have no pin of either kind: pin_of() is asked only of the others.
            pin = (pin_of(mem) if mem is not None and (mem.pin or mem.config_pin is not None)
                   else None)
            d = self._decide(mem, pin, stage, recipient_count, now, count, helos, client,
                             envelope_from)
            monitor = book.config.general.monitor_only or pin == "monitor"
            if monitor and not d.is_continue:
                d = answer.proceed(d.state, d.score,
                                   f"monitor only, would {d.action.value}: {d.reason}")
            elif (d.action is Action.TEMPFAIL and count and stage is Stage.RCPT
                  and mem is not None and mem.state is State.THROTTLED
                  and book.judge.refused_while_throttled(mem, recipient, now)):
                book.changed(mem, now)
                changed = True
        return d, changed

    def _shown(self, mem: SenderMemory, now: float, helos: tuple[str, ...],
               client: tuple[str, str], envelope_from: str, recipient: str) -> bool:
        """What a policy request shows counts as the log's report of it would."""
        book = self.book
        book.shown(mem, envelope_from, (recipient,), client[0], now)
        # A clean HELO (nearly every one) adds nothing: the judge is asked only of one
        # that shows something, the session's verdict looked up once (helocache.py).
        if helos and session_helos(helos, client[0], client[1], envelope_from, recipient,
                                   book.judge.own_domains):
            book.judge.helos(mem, helos, client[0], now, envelope_from=envelope_from,
                             recipients=(recipient,), client_name=client[1])
        if mem.dirty:
            book.changed(mem, now)
            return True
        return False

    def _decide(self, mem: SenderMemory | None, pin: str | None, stage: Stage, rcpts: int,
                now: float, count: bool, helos: tuple[str, ...], client: tuple[str, str],
                envelope_from: str) -> Decision:
        book = self.book
        if mem is None:
            state, score = State.OK, 0.0
        else:
            state, score = mem.state, mem.score(now, book.half_life)
        if pin == "allow":
            return answer.proceed(state, score, "allowed by override")
        if state is State.BLOCKED and mem is not None:
            why, said = self._words(mem, pin)
            return answer.refuse(state, score, why, f"blocked (score {score:.1f}): {said}")
        if stage in (Stage.CONNECT, Stage.HELO):
            return answer.proceed(state, score)
        if (stage is Stage.MAIL and helos and book.config.reject_bad_helo
                and (bad := self.bad_helo(helos, client, envelope_from))):
            return answer.bad_helo(state, score, f"HELO refused: {bad}")
        if state is State.HELD and mem is not None:
            why, said = self._words(mem, pin)
            return answer.hold(state, score, why, f"held (score {score:.1f}): {said}")
        if mem is None:
            return answer.proceed(state, score)
        return self._rate(mem, state, score, stage, rcpts, now, count, pin)

    @staticmethod
    def _words(mem: SenderMemory, pin: str | None) -> tuple[str, str]:
        """Why a sender is restrained, for the client and for the operator's log: only
        worked out when a decision says it (most proceed, and say nothing)."""
        if pin is not None and pin in PIN_STATES:
            # A pin speaks in the operator's words, even when the state came from the
            # store (another host or the CLI pinned it), not this engine's transition.
            return answer.OPERATOR_PHRASE, pin_reason(mem, pin)
        return answer.phrase(mem.top_finding()), mem.reason

    def _rate(self, mem: SenderMemory, state: State, score: float, stage: Stage,
              rcpts: int, now: float, count: bool, pin: str | None) -> Decision:
        book = self.book
        # An operator's [[overrides]] action = "limits" pins the budget: no list allowance.
        pinned = mem.config_pin is not None and mem.config_pin.action == "limits"
        cls, limits = self._budget(mem.cls, state, not pinned and mem.list_until > now)
        rates = mem.rates
        if stage is Stage.RCPT and mem.probation is not None and state.rank <= 1:
            refused = self._probation(mem, state, score, rcpts, now, count)
            if refused is not None:
                return refused
        if stage is Stage.RCPT:
            over = rates.check(limits, max(rcpts, 0), 0, now)
            consume = (max(rcpts, 0), 0)
        elif stage is Stage.EOM:
            over = rates.check(limits, 0, 1, now)
            consume = (0, 1)
        else:  # MAIL, DATA: is the message budget already spent?
            over = rates.peek_messages(limits, now)
            consume = (0, 0)
        if over is not None:
            reason = f"rate limit [{cls}] {over.what}: {over.current}/{over.limit}"
            if state is State.THROTTLED:
                reason = f"throttled (score {score:.1f}): {mem.reason}; {reason}"
            shown = (self._words(mem, pin)[0] if state is State.THROTTLED
                     else f"too many {over.what}")
            return answer.rate_limited(state, score, shown, reason)
        if count:
            rates.consume(*consume, now)
            if book.config.store.shared_limits and any(consume) and restricted(mem):
                book.batch.add_use(mem.key, book.mta, use_bucket(now), *consume)
        return answer.proceed(state, score)

    def _budget(self, cls: str, state: State, list_sender: bool) -> tuple[str, Limits]:
        """`budget()`, asked at every RCPT and END-OF-MESSAGE of a handful of classes and
        states: remembered for the limits in force (a reload brings new ones)."""
        classes = self.book.config.limits
        if classes is not self._budgets_of:
            self._budgets_of, self._budgets = classes, {}
        key = (cls, state, list_sender)
        found = self._budgets.get(key)
        if found is None:
            found = self._budgets[key] = budget(classes, cls, state, list_sender=list_sender)
        return found

    def _probation(self, mem: SenderMemory, state: State, score: float, rcpts: int,
                   now: float, count: bool) -> Decision | None:
        """A sender on probation has a small budget of its own; None while within it."""
        probation = self.book.judge.probation
        spent = probation.over_budget(mem, max(rcpts, 0), now)
        if spent is not None:
            return answer.rate_limited(
                state, score, answer.phrase(Kind.PROBATION),
                f"{Kind.PROBATION}: {mem.probation.reason}; budget {spent}/"
                f"{probation.recipients} recipients per {probation.window:.0f} s")
        if count:
            probation.consume(mem, max(rcpts, 0), now)
        return None

    def bad_helo(self, helos: tuple[str, ...], client: tuple[str, str],
                 envelope_from: str) -> str:
        """(client address, its verified reverse name): a small firm's own name is no lie."""
        found = judge_helos(helos, client[0], client[1], envelope_from, (),
                            self.book.judge.own_domains)
        return "; ".join(f"{f.kind} {f.helo!r}" for f in found)
