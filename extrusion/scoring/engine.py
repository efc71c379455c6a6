"""The engine: events in, per-sender score and state, decisions out (`EngineAPI`).

`decide()` answers from memory under one lock: no store access on the MTA's
path. The recording methods update memory at once and queue rows; `flush()`
writes the queue in one batched transaction (or to the local spool while the
store is unreachable, replayed when it returns), and `refresh()` pulls the
states and scores other processes wrote. Listeners hear about every state
change after the lock is released, so they may call back into the engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from extrusion.config import Config
from extrusion.scoring import decisions as answer
from extrusion.scoring.api import EngineAPI
from extrusion.scoring.baseline import Baselines
from extrusion.scoring.cap import SenderCap
from extrusion.scoring.classify import OutcomeClass, classify, is_failure
from extrusion.scoring.events import (
    Action,
    ClientEvidence,
    Connection,
    Decision,
    FlowEvidence,
    Headers,
    Notice,
    OperatorAction,
    OperatorVerb,
    Outcome,
    Refused,
    Stage,
    State,
    StateChange,
    Status,
    Submission,
)
from extrusion.scoring.failwindow import FailureShare
from extrusion.scoring.forwarding import foreign_envelope
from extrusion.scoring.heuristics import is_auto_reply, is_null_sender, list_identity
from extrusion.scoring.judge import Judge, helo_note, judge_helos
from extrusion.scoring.kinds import Kind
from extrusion.scoring.limits import RateState, budget
from extrusion.scoring.logjudge import judge_evidence
from extrusion.scoring.memory import SenderMemory, copy_findings
from extrusion.scoring.overrides import OverrideSet, SenderMap
from extrusion.scoring.quarantine import Quarantine
from extrusion.scoring.rows import (
    PIN_CLEAR,
    PIN_SET,
    QUEUED,
    Batch,
    MessageRow,
    RecipientRow,
    counter_bucket,
)
from extrusion.scoring.settings import EngineSettings
from extrusion.scoring.shared import restricted, use_bucket
from extrusion.scoring.shown import SaslAddresses, authenticated, envelope_domain
from extrusion.scoring.spool import Spool
from extrusion.scoring.state import PIN_STATES, Thresholds, next_state
from extrusion.scoring.store import Store, state_change_row
from extrusion.scoring.sync import ENGINE, NEGLIGIBLE_SCORE, QUIET_HALF_LIVES, StoreSync
from extrusion.scoring.tracker import MESSAGE_MEMORY_SECONDS, MessageInfo, MessageTracker

log = logging.getLogger("extrusion.scoring")

NO_HEADERS = Headers()  # what a message from the log carries: no headers to judge by
HOUSEKEEPING_SECONDS = 30.0
MAX_UNRESOLVED = 100_000
FINAL = frozenset({Status.SENT, Status.BOUNCED, Status.EXPIRED, Status.REJECTED})
MAX_FLOW_SOURCES = 16  # a customer's addresses kept in that finding (the border export)
class Engine(StoreSync):
    """Implements `extrusion.scoring.api.EngineAPI`."""

    def __init__(
        self,
        config: Config | EngineSettings,
        store: Store,
        clock: Callable[[], float] = time.time,
        *,
        own_store: bool = False,
    ) -> None:
        self.store = store
        self.clock = clock
        self._own_store = own_store
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._senders: dict[str, SenderMemory] = {}
        self._dirty: set[str] = set()
        self._batch = Batch()
        self._messages = MessageTracker()
        self._unresolved: deque[tuple[float, Outcome]] = deque()
        self._listeners: list[Callable[[StateChange], None]] = []
        self._changes: deque[StateChange] = deque()
        self._bg_flush: threading.Thread | None = None
        self._mark: float | None = None
        self._next_housekeeping = 0.0
        self._schema_ok = False
        self._shared: set[str] = set()
        self._failures = FailureShare()  # the failure window the hosts share
        self.store_ok = True
        self.last_store_error = ""
        # True when no other process records messages (replay): a queue id not in
        # memory is in the store neither, so an outcome never waits for or asks it.
        self.memory_is_whole = False
        self.spool = Spool(config.store.spool_dir)
        self.quarantine = Quarantine(config.store.spool_dir)
        self._sasl = SaslAddresses(config.scoring.sasl_memory_seconds)
        self._baselines = Baselines()
        self._notices: deque[Notice] = deque()
        self._notice_listeners: list[Callable[[Notice], None]] = []
        self.cap = SenderCap(config.scoring.max_senders)
        self._apply_config(config)
        self._load()

    # --- configuration -----------------------------------------------------------------

    def _apply_config(self, config: Config | EngineSettings) -> None:
        # The engine keeps only its own settings, never the whole Config.
        if not isinstance(config, EngineSettings):
            config = EngineSettings.from_config(config)
        self.config = config
        self.mta = config.mta
        self.half_life = config.scoring.half_life_seconds
        self.window = config.scoring.window_seconds
        self.thresholds = Thresholds.from_config(config.scoring)
        self.judge = Judge(config)
        self._sasl.memory = config.scoring.sasl_memory_seconds
        self.cap.limit = config.scoring.max_senders
        self.map = SenderMap(config.customers)
        self.overrides = OverrideSet(config.overrides)

    def reload(self, config: Config | EngineSettings) -> None:
        """Take a new (validated) config: thresholds, weights, limits, customers, overrides."""
        with self._lock:
            self._apply_config(config)
            now = self.clock()
            for mem in self._senders.values():
                self._classify_sender(mem)
                self._evaluate(mem, now)
        self._dispatch()

    def _classify_sender(self, mem: SenderMemory) -> None:
        """Limits class and config override for a sender (after a reload or a new address)."""
        override = self.overrides.match(mem.key, mem.client_addr) if self.overrides else None
        mem.config_pin = override
        cls = override.limits if override is not None and override.action == "limits" else ""
        cls = cls or self.map.limits_class(mem.key)
        if cls != mem.cls:
            mem.cls = cls
            self._touch(mem)

    # --- keys and memory -------------------------------------------------------------------

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        return self.map.key(client_addr, sasl_user)

    def _mem(self, key: str, now: float, client_addr: str = "") -> SenderMemory:
        mem = self._senders.get(key)
        if mem is None:
            mem = SenderMemory(key, now, self.window)
            self.judge.set_windows(mem)
            mem.baseline = self._baselines.take(key)
            mem.client_addr = client_addr
            self._senders[key] = mem
            self._classify_sender(mem)
            self._touch(mem)
            if mem.config_pin is not None:
                self._evaluate(mem, now)  # a config override pins it from the first sight
            if self.cap.due(len(self._senders)):
                self._forget_least_recent()
        elif client_addr and client_addr != mem.client_addr:
            mem.client_addr = client_addr
            self._classify_sender(mem)
            self._evaluate(mem, now)
        if now > mem.last_seen:
            mem.last_seen = now
        return mem

    def _forget_least_recent(self) -> None:
        """Keep under `[scoring] max_senders`: the store holds the forgotten ones in full."""
        for key in self.cap.victims(self._senders, self._dirty,
                                    lambda m: self._pin(m) is not None):
            del self._senders[key]

    def _touch(self, mem: SenderMemory) -> None:
        mem.dirty = True
        self._dirty.add(mem.key)

    def _load(self) -> None:
        """Senders worth remembering from the store (best effort: the store may be down)."""
        try:
            self._ensure_schema()
            rows, mark = self.store.changed_senders(
                None, quiet_before=self.clock() - QUIET_HALF_LIVES * self.half_life)
            stored_baselines = self.store.baselines(self._baselines.limit)
        except Exception as exc:  # store down at start: answer from memory, retry later
            self._store_failed("loading senders", exc)
            return
        now = self.clock()
        with self._lock:
            self._baselines.load(stored_baselines)
            for row in rows:
                self._adopt(row, now, create=True)
            self._mark = mark
            if self.cap.due(len(self._senders)):
                self._forget_least_recent()  # a big store: keep the most recently active
        self._dispatch()

    # --- events in -------------------------------------------------------------------------

    def connection(self, event: Connection) -> None:
        key = self.sender_key(client_addr=event.client_addr, sasl_user=event.sasl_user)
        with self._lock:
            mem = self._mem(key, event.time, event.client_addr)
            self.judge.helos(mem, event.helos, event.client_addr, event.time,
                             client_name=event.client_name, envelope_from=event.envelope_from,
                             recipients=event.recipients, confirmed=event.helo_confirmed)
            self.judge.inbound(mem, event.client_addr, Headers(), event.time)
            self._changed(mem, event.time)
        self._after_record()

    def submission(self, event: Submission) -> None:
        mta = event.mta or self.mta
        with self._lock:
            if (mta, event.queue_id) in self._messages:
                return  # recorded already (milter and log feed may both report it)
            now = event.time
            mem = self._mem(event.sender, now, event.client_addr)
            n = len(event.recipients)
            null = is_null_sender(event.envelope_from)
            domain = envelope_domain(event.envelope_from)
            # An auto-reply from the sender's own domain (one it sent from before): a
            # return path a bot forges at a new domain every time is no excuse.
            auto = (not null and is_auto_reply(event.envelope_from, event.headers, n)
                    and (event.headers != NO_HEADERS or domain in mem.baseline.domains))
            candidate = self.judge.list_candidate(n) and not null
            info = MessageInfo(
                mta=mta, queue_id=event.queue_id, sender=event.sender, time=now,
                envelope_from=event.envelope_from, rcpt_count=n, null_sender=null,
                auto_reply=auto, list_like=None if candidate else False,
                # Only a possible list post needs to say which list it belongs to.
                list_id=list_identity(event.envelope_from, event.headers) if candidate else "",
            )
            for old in self._messages.add(info):
                self._settle_forgotten(old, now)
            self.judge.helos(mem, event.helos, event.client_addr, now,
                             client_name=event.client_name, envelope_from=event.envelope_from,
                             recipients=event.recipients, confirmed=event.helo_confirmed)
            if event.client_evidence:
                self.judge.inbound(mem, event.client_addr, event.headers, now,
                                   envelope_from=event.envelope_from,
                                   client_name=event.client_name)
            self._shown(mem, event.envelope_from, event.recipients, event.client_addr, now)
            if not null:
                mem.baseline.learn(now, event.helos[-1] if event.helos else "", domain,
                                   authenticated(mem.key), n)
                if event.headers.forwarded_from or foreign_envelope(event.envelope_from,
                                                                    event.client_name):
                    mem.baseline.learn_foreign()
            self._batch.message_rows.append(_row(MessageRow, (
                now, mta, event.queue_id, event.sender, event.envelope_from,
                event.helos[-1] if event.helos else "", event.client_addr, event.client_name,
                event.size, n, event.message_id, null, auto, info.list_like is None,
                info.list_id,
            )))
            # The store counts the message ("messages", "recipients" counters) when it
            # writes the row: only there can a second report of it, from the other
            # process, be told apart.
            self._batch.recipient_rows.extend(
                _row(RecipientRow, (now, mta, event.queue_id, event.sender, r, QUEUED,
                                    "", "", "", ""))
                for r in event.recipients
            )
            self._changed(mem, now)
        self._after_record()

    def outcome(self, event: Outcome) -> None:
        mta = event.mta or self.mta
        with self._lock:
            info = self._messages.get(mta, event.queue_id)
        if info is None and self.store_ok and not self.memory_is_whole:
            # Recorded by another process (the milter), or sender unknown: ask the store.
            info = self._lookup_message(mta, event.queue_id)
        if info is None and not event.sender and not self.memory_is_whole:
            with self._lock:
                if len(self._unresolved) < MAX_UNRESOLVED:
                    # Its submission may still sit in another process's write queue.
                    self._unresolved.append((self.clock(), event))
                    return
        self._record_outcome(event, mta, info, event.sender or (info.sender if info else ""))
        self._after_record()

    def _record_outcome(self, event: Outcome, mta: str, info: MessageInfo | None,
                        sender: str) -> None:
        cls = classify(event.status, event.dsn, event.reply)
        now = event.time
        with self._lock:
            self._batch.recipient_rows.append(_row(RecipientRow, (
                now, mta, event.queue_id, sender, event.recipient, event.status.value,
                cls.value, event.dsn, event.reply, event.relay,
            )))
            if not sender:
                return  # nobody to judge: kept for the record only
            self._batch.add_counter(sender, event.status.value, counter_bucket(now))
            mem = self._mem(sender, now)
            if info is not None and event.status in FINAL:
                info.final.add(event.recipient)
            own_refusal = event.status is Status.REJECTED and not self.judge.mx
            if not is_failure(cls) or own_refusal:
                # Delivered, deferred (counts only if it later bounces or expires), or
                # refused by this MTA itself (often extrusion's own enforcement).
                if not own_refusal:
                    self.judge.not_failed(mem, info, event.recipient,
                                          cls is OutcomeClass.DELIVERED, now)
                if info is not None:
                    self.judge.attempted(mem, info, event.recipient, now)
            elif self.judge.forwarded(mem, _envelope(event, info), event.client_name, now,
                                      refusal=cls):
                if info is not None:  # our filter refused forwarded mail: not the forwarder's
                    self.judge.attempted(mem, info, event.recipient, now)
            else:
                null = info.null_sender if info is not None else event.envelope_from == ""
                was = self._misconfigured(mem)
                self.judge.failure(mem, info, event.recipient, cls, now, null)
                if not was and self._misconfigured(mem):
                    f = mem.findings[Kind.MISCONFIGURED]
                    self._notices.append(Notice(
                        time=now, sender=mem.key, kind=Kind.MISCONFIGURED,
                        score=round(mem.score(now, self.half_life), 3),
                        reason=f"rejection daemon: {f.get('failed_auto_replies', 0)} auto-replies "
                               "without <> failed", evidence=copy_findings(mem.findings)))
            if self.config.store.shared_failures:
                self._failures.note(mem, now, self.config.store.shared_failures_from)
            self._changed(mem, now)

    def _shown(self, mem: SenderMemory, envelope_from: str, recipients: tuple[str, ...],
               client_addr: str, now: float) -> None:
        """Submission-time evidence, from the milter, a policy request or the log alike."""
        auth = authenticated(mem.key)
        if auth and client_addr:
            self._sasl.saw(client_addr, now)
        self.judge.submitted(mem, envelope_from=envelope_from, recipients=recipients,
                             client_addr=client_addr, authenticated=auth, sasl=self._sasl,
                             now=now)

    def _misconfigured(self, mem: SenderMemory) -> bool:
        return bool(mem.findings.get(Kind.MISCONFIGURED, {}).get("rejection_daemon"))

    def operator(self, event: OperatorAction) -> StateChange | None:
        now = event.time
        verb = OperatorVerb(event.verb)
        with self._lock:
            # Raises SenderKeyError before anything is remembered or written.
            mem = self._mem(self.map.operator_key(event.sender), now)
            old = mem.state
            if verb is OperatorVerb.RELEASE:
                mem.forget(now, event.who)
                mem.pin = mem.pinned_by = mem.pinned_reason = None
                mem.pin_dirty = PIN_CLEAR
                mem.state = State.OK  # released: back to the start, evidence forgotten
            else:
                mem.pin, mem.pinned_by, mem.pinned_reason = verb.value, event.who, event.why
                mem.pin_dirty = PIN_SET
            self._touch(mem)
            reason = f"{verb.value} by {event.who}: {event.why}"
            new = self._target(mem, now)
            change = self._transition(mem, old, new, now, reason, event.who)
        self._dispatch()
        return change

    # --- state ---------------------------------------------------------------------------------

    def _pin(self, mem: SenderMemory) -> str | None:
        if mem.pin:
            return mem.pin
        o = mem.config_pin
        return o.action if o is not None and o.action != "limits" else None

    def _pin_reason(self, mem: SenderMemory, pin: str) -> str:
        """The operator's (or the config's) own words for a pin: "block by NOC: stolen"."""
        who = (mem.pinned_by or "operator") if mem.pin else "config"
        why = (mem.pinned_reason if mem.pin else getattr(mem.config_pin, "reason", "")) or ""
        return f"{pin} by {who}: {why}".rstrip(": ")

    def _target(self, mem: SenderMemory, now: float) -> State:
        pin = self._pin(mem)
        if pin in PIN_STATES:
            return PIN_STATES[pin]
        if (mem.state is State.OK and mem.probation is None
                and mem.score_bound() < self.thresholds.watch):
            return State.OK  # the common case (runs for every event): no decay computed
        if mem.probation is not None:
            self.judge.probation.expire(mem, now)
        # A `watch` that only the probation put it in falls back without hysteresis.
        current = State.OK if mem.by_probation and mem.state is State.WATCH else mem.state
        score = mem.score(now, self.half_life)
        if current is State.OK and score < self.thresholds.watch:
            target = State.OK  # without walking the thresholds
        else:
            target = next_state(current, score, self.thresholds)
        if mem.probation is not None and target is State.OK:
            return State.WATCH
        return target

    def _changed(self, mem: SenderMemory, now: float) -> None:
        if mem.dirty:
            self._dirty.add(mem.key)
        self._evaluate(mem, now)

    def _evaluate(self, mem: SenderMemory, now: float) -> StateChange | None:
        new = self._target(mem, now)
        if new is mem.state:
            return None
        pin = self._pin(mem)
        if pin in PIN_STATES:
            who = (mem.pinned_by or "operator") if mem.pin else "config"
            reason = self._pin_reason(mem, pin)
        elif new is State.WATCH and mem.probation is not None and not mem.state.rank:
            who, reason = ENGINE, f"{Kind.PROBATION}: {mem.probation.reason}"
        elif new.rank > mem.state.rank:
            who, reason = ENGINE, answer.phrase(mem.top_finding())
        elif mem.by_probation and mem.probation_end:
            who, reason = ENGINE, mem.probation_end
        else:
            who, reason = ENGINE, "evidence decayed"
        return self._transition(mem, mem.state, new, now, reason, who)

    def _transition(self, mem: SenderMemory, old: State, new: State, now: float, reason: str,
                    who: str) -> StateChange:
        """Record a state change (or an operator's action on an unchanged state)."""
        score = round(mem.score(now, self.half_life), 3)
        change = StateChange(
            time=now, sender=mem.key, old=old, new=new, score=score, reason=reason, who=who,
            evidence={"score": score, "findings": copy_findings(mem.findings),
                      "failed_recipients": mem.failed.count(now)},
        )
        if new is not old:
            mem.state_since = now
        mem.by_probation = new is State.WATCH and mem.probation is not None
        mem.probation_end = ""
        mem.state = new
        mem.reason = reason
        mem.state_dirty = True
        self._touch(mem)
        self._batch.state_changes.append(state_change_row(change))
        if old is not new:
            self._changes.append(change)
        return change

    def add_listener(self, listener: Callable[[StateChange], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def add_notice_listener(self, listener: Callable[[Notice], None]) -> None:
        """Hear about findings that change no state (a rejection daemon found)."""
        with self._lock:
            self._notice_listeners.append(listener)

    def _dispatch(self) -> None:
        """Tell listeners about state changes; called with the lock released."""
        while self._notices:
            try:
                notice = self._notices.popleft()
            except IndexError:
                break
            for notice_listener in list(self._notice_listeners):
                try:
                    notice_listener(notice)
                except Exception:
                    log.exception("notice listener failed for %s", notice.sender)
        if not self._changes:
            # Nearly always (called after every event). A change queued by another
            # thread right after this check is dispatched by that thread's own call.
            return
        while True:
            try:
                change = self._changes.popleft()
            except IndexError:
                return
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:
                    log.exception("state change listener failed for %s", change.sender)

    def _after_record(self) -> None:
        self._dispatch()
        if len(self._batch) >= self.config.store.flush_batch:
            self._flush_in_background()

    def _flush_in_background(self) -> None:
        with self._lock:
            if self._bg_flush is not None and self._bg_flush.is_alive():
                return
            self._bg_flush = threading.Thread(target=self._safe_flush, name="extrusion-flush",
                                              daemon=True)
            self._bg_flush.start()

    def _safe_flush(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("background flush failed")

    # --- decisions -----------------------------------------------------------------------------

    def decide(
        self,
        sender: str,
        stage: Stage,
        recipient_count: int = 1,
        now: float | None = None,
        *,
        count: bool = True,
        helos: tuple[str, ...] = (),
        client_addr: str = "",
        envelope_from: str = "",
        recipient: str = "",
        client_name: str = "",
    ) -> Decision:
        if now is None:
            now = self.clock()
        changed: object = None
        with self._lock:
            mem = self._senders.get(sender)
            if mem is None and (self.overrides or (count and stage in (Stage.RCPT, Stage.EOM))):
                mem = self._mem(sender, now, client_addr)
                changed = True
            elif mem is not None and mem.state is not State.OK:
                changed = self._evaluate(mem, now)  # the evidence may have decayed since
            if count and stage is Stage.RCPT and mem is not None and recipient:
                # What a policy request shows counts as the log's report of it would.
                self._shown(mem, envelope_from, (recipient,), client_addr, now)
                if helos:
                    self.judge.helos(mem, helos, client_addr, now, envelope_from=envelope_from,
                                     recipients=(recipient,), client_name=client_name)
                if mem.dirty:
                    self._changed(mem, now)
                    changed = True
            d = self._decide(mem, stage, recipient_count, now, count, helos,
                             (client_addr, client_name), envelope_from)
            monitor = self.config.general.monitor_only or (
                mem is not None and self._pin(mem) == "monitor"
            )
            if monitor and not d.is_continue:
                d = answer.proceed(d.state, d.score,
                                   f"monitor only, would {d.action.value}: {d.reason}")
            elif (d.action is Action.TEMPFAIL and count and stage is Stage.RCPT
                  and mem is not None and mem.state is State.THROTTLED
                  and self.judge.refused_while_throttled(mem, recipient, now)):
                self._changed(mem, now)
                changed = True
        if changed is not None:
            self._dispatch()
        return d

    def _decide(self, mem: SenderMemory | None, stage: Stage, rcpts: int,
                now: float, count: bool, helos: tuple[str, ...], client: tuple[str, str],
                envelope_from: str) -> Decision:
        if mem is None:
            state, score, pin = State.OK, 0.0, None
        else:
            state, score, pin = mem.state, mem.score(now, self.half_life), self._pin(mem)
        if pin == "allow":
            return answer.proceed(state, score, "allowed by override")
        why = answer.OPERATOR_PHRASE if pin in PIN_STATES else answer.phrase(
            mem.top_finding() if mem is not None else "")
        # A pin speaks in the operator's words, even when the state came from the store
        # (another host or the CLI pinned it) and not from this engine's own transition.
        said = "" if mem is None else (
            self._pin_reason(mem, pin) if pin in PIN_STATES else mem.reason)
        if state is State.BLOCKED:
            return answer.refuse(state, score, why, f"blocked (score {score:.1f}): {said}")
        if stage in (Stage.CONNECT, Stage.HELO):
            return answer.proceed(state, score)
        if (stage is Stage.MAIL and helos and self.config.reject_bad_helo
                and (bad := self._bad_helo(helos, client, envelope_from))):
            return answer.bad_helo(state, score, f"HELO refused: {bad}")
        if state is State.HELD:
            return answer.hold(state, score, why, f"held (score {score:.1f}): {said}")
        return self._rate(mem, state, score, stage, rcpts, now, count, why)

    def _rate(self, mem: SenderMemory | None, state: State, score: float, stage: Stage,
              rcpts: int, now: float, count: bool, why: str) -> Decision:
        if mem is None:
            return answer.proceed(state, score)
        # An operator's [[overrides]] action = "limits" pins the budget: no list allowance.
        pinned = mem.config_pin is not None and mem.config_pin.action == "limits"
        cls, limits = budget(self.config.limits, mem.cls, state,
                             list_sender=not pinned and mem.list_until > now)
        rates = mem.rates
        if rates is None:
            rates = mem.rates = RateState()
        probation = self.judge.probation
        if stage is Stage.RCPT and mem.probation is not None and state.rank <= 1:
            spent = probation.over_budget(mem, max(rcpts, 0), now)
            if spent is not None:
                return answer.rate_limited(
                    state, score, answer.phrase(Kind.PROBATION),
                    f"{Kind.PROBATION}: {mem.probation.reason}; budget {spent}/"
                    f"{probation.recipients} recipients per {probation.window:.0f} s")
            if count:
                probation.consume(mem, max(rcpts, 0), now)
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
            shown = why if state is State.THROTTLED else f"too many {over.what}"
            return answer.rate_limited(state, score, shown, reason)
        if count:
            rates.consume(*consume, now)
            if self.config.store.shared_limits and any(consume) and restricted(mem):
                self._batch.add_use(mem.key, self.mta, use_bucket(now), *consume)
        return answer.proceed(state, score)

    def helo_note(self, helos: tuple[str, ...], client_addr: str, client_name: str = "",
                  envelope_from: str = "") -> str:
        """The kinds of HELO anomaly in a session ("" for none), for the MTA's log."""
        return helo_note(helos, client_addr, client_name, envelope_from,
                         self.judge.own_domains)

    def refused(self, event: Refused) -> None:
        """A recipient the MTA refused because this sender was rate limited, read from the
        log (replay): evidence as when `decide()` refuses it live, if the sender is
        throttled here too."""
        with self._lock:
            mem = self._senders.get(event.sender)
            if (mem is None or mem.state is not State.THROTTLED
                    or not self.judge.refused_while_throttled(mem, event.recipient, event.time)):
                return
            self._changed(mem, event.time)
        self._dispatch()

    def evidence(self, event: ClientEvidence) -> None:
        """What the log shows about a client besides outcomes (scoring/logjudge.py)."""
        with self._lock:
            mem = self._mem(event.sender, event.time, event.client_addr)
            judge_evidence(self.judge, mem, event, event.time)
            self._changed(mem, event.time)
        self._after_record()

    def direct_sending(self, event: FlowEvidence) -> None:
        """Flow records show the address sending straight to the Internet's MX hosts: the
        finding lands on the sender its smarthost mail has, weighing `direct_to_mx`."""
        key = self.sender_key(client_addr=event.client_addr)
        weight = self.config.weights.direct_to_mx
        if event.escalated:  # its mail at our MX was refused or spam (MX mode)
            weight *= self.config.flows_mx_escalation
        mx = {"mx_delivered": event.mx_delivered, "mx_refused": event.mx_refused} \
            if event.mx_delivered >= 0 else {}
        with self._lock:
            mem = self._mem(key, event.time, event.client_addr)
            mem.add(weight, event.time, self.half_life)
            old = mem.findings.get(Kind.DIRECT_TO_MX, {})
            sources = [a for a in old.get("sources", []) if a != event.client_addr]
            mem.note(Kind.DIRECT_TO_MX, event.time, weight,
                     example=", ".join(event.examples[:3]),
                     sources=[*sources, event.client_addr][-MAX_FLOW_SOURCES:],
                     destinations=event.destinations, networks=event.networks,
                     hours_active=event.hours_active, blocks_active=event.blocks_active,
                     packets=event.packets, hourly=[list(h) for h in event.hourly], **mx)
            self._changed(mem, event.time)
        self._after_record()

    def _bad_helo(self, helos: tuple[str, ...], client: tuple[str, str],
                  envelope_from: str) -> str:
        """(client address, its verified reverse name): a small firm's own name is no lie."""
        found = judge_helos(helos, client[0], client[1], envelope_from, (),
                            self.judge.own_domains)
        return "; ".join(f"{f.kind} {f.helo!r}" for f in found)

    def undelivered_queue_ids(self, sender: str, mta: str = "") -> list[str]:
        mta = mta or self.mta
        with self._lock:
            ids = self._messages.open_queue_ids(sender, mta)
        try:
            self.flush()
            stored = self.store.undelivered_queue_ids(sender, mta)
        except Exception as exc:
            self._store_failed("listing undelivered mail", exc)
            stored = []
        return list(dict.fromkeys([*stored, *ids]))

    # --- the store -----------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        self._next_housekeeping = now + HOUSEKEEPING_SECONDS
        for info in self._messages.undecided_before(now - self.window):
            if (mem := self._message_sender(info)) is not None:
                self.judge.settle_list(mem, info, now, final=True)
                self._changed(mem, now)
        for info in self._messages.expire(now - MESSAGE_MEMORY_SECONDS):
            self._settle_forgotten(info, now)
        for mem in list(self._senders.values()):
            if mem.state is not State.OK:
                self._evaluate(mem, now)  # fall back as evidence decays, even without traffic
        idle = [
            k for k, m in self._senders.items()
            if k not in self._dirty and m.state is State.OK and not self._pin(m)
            and m.probation is None
            and m.score(now, self.half_life) < NEGLIGIBLE_SCORE
            and now - m.last_seen > max(self.window, self.judge.helo_window)
            and (m.rates is None or m.rates.idle(now))
        ]
        for k in idle:
            self._baselines.keep(k, self._senders.pop(k).baseline)

    def _after_flush(self) -> None:
        """The senders a flush wrote may be forgotten now, if memory is over the cap."""
        with self._lock:
            self.cap.retry_soon()
            if self.cap.due(len(self._senders)):
                self._forget_least_recent()

    def _settle_forgotten(self, info: MessageInfo, now: float) -> None:
        if info.list_like is None and (mem := self._message_sender(info)) is not None:
            self.judge.settle_list(mem, info, now, final=True)
            self._changed(mem, now)

    def _message_sender(self, info: MessageInfo) -> SenderMemory | None:
        """The sender of a message whose list verdict is due; one the cap forgot is
        brought back (as on its next sight) so the held failures still count."""
        if not info.sender:
            return None
        mem = self._senders.get(info.sender)
        return mem if mem is not None else self._mem(info.sender, info.time)

    def status(self) -> dict[str, Any]:
        """For health checks and metrics."""
        with self._lock:
            return {
                "store_ok": self.store_ok, "last_store_error": self.last_store_error,
                "senders": len(self._senders), "queued": len(self._batch),
                "spooled_batches": len(self.spool), "unresolved_outcomes": len(self._unresolved),
                "quarantined_rows": self.quarantine.rows,
                "senders_evicted": self.cap.evicted, "senders_over_cap": self.cap.over,
            }

    def close(self) -> None:
        bg = self._bg_flush
        if bg is not None:
            bg.join()
        try:
            self.flush()
        finally:
            if self._own_store:
                self.store.close()


def _envelope(event: Outcome, info: MessageInfo | None) -> str:
    if event.envelope_from is not None:
        return event.envelope_from
    return info.envelope_from if info is not None else ""


def _implements_the_protocol(engine: Engine) -> EngineAPI:
    return engine  # mypy checks Engine against the adapters' Protocol here


def open_engine(config: Config, clock: Callable[[], float] = time.time) -> Engine:
    """An engine on the configured store; starts even while the store is unreachable."""
    store = Store(config.store.url, busy_timeout_ms=config.store.busy_timeout_ms, create=False)
    return Engine(config, store, clock, own_store=True)


# A typed row from every field, in order, without the named tuple's Python-level
# constructor: a third of its cost, for the rows recorded per event.
_row = tuple.__new__


def store_of(engine: object) -> Store | None:
    """The store an engine writes to, for the adapters that also read or write it
    directly (audit entries, pruning, the operator's views): None for an engine that
    has none of its own (a slot forwarding to another, a stand-in)."""
    return engine.store if isinstance(engine, Engine) else None




__all__ = ["Action", "Engine", "open_engine", "store_of"]
