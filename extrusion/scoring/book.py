"""The engine's memory of senders, shared by its parts under one lock.

Every part of the engine (recording, decisions, operator actions, the store
synchroniser) reads and changes the same senders, message tracker and write
batch; `SenderBook` holds them with the settings they are judged by, and
moves a sender between states (`transitions.py`). Listeners hear about each
state change after the lock is released (`dispatch()`), so they may call
back into the engine.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from extrusion.config import Config
from extrusion.scoring.attention import AttentionIndex
from extrusion.scoring.baseline import Baselines
from extrusion.scoring.cap import SenderCap
from extrusion.scoring.events import Notice, State, StateChange
from extrusion.scoring.judge import Judge
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.overrides import OverrideSet, SenderMap
from extrusion.scoring.pins import pin_of
from extrusion.scoring.rows import Batch
from extrusion.scoring.settings import EngineSettings
from extrusion.scoring.shown import SaslAddresses, authenticated
from extrusion.scoring.state import Thresholds
from extrusion.scoring.tracker import MESSAGE_MEMORY_SECONDS, MessageInfo, MessageTracker
from extrusion.scoring.transitions import evaluate, settled

log = logging.getLogger("extrusion.scoring")

HOUSEKEEPING_SECONDS = 30.0
# A sender whose score fell below this, idle and unpinned, is forgotten from memory.
NEGLIGIBLE_SCORE = 0.01


class SenderBook:
    """Senders, messages and the pending writes, with the settings that judge them."""

    def __init__(self, config: Config | EngineSettings,
                 clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.senders: dict[str, SenderMemory] = {}
        self.dirty: set[str] = set()
        self.batch = Batch()
        self.messages = MessageTracker()
        self.changes: deque[StateChange] = deque()
        self.notices: deque[Notice] = deque()
        self.listeners: list[Callable[[StateChange], None]] = []
        self.notice_listeners: list[Callable[[Notice], None]] = []
        self.baselines = Baselines()
        self.sasl = SaslAddresses(config.scoring.sasl_memory_seconds)
        self.cap = SenderCap(config.scoring.max_senders)
        self.next_housekeeping = 0.0
        # False when nobody will read the messages, recipients, per-minute counters and
        # baselines (a replay into a throw-away store without a report): only senders
        # and state changes are written then.
        self.keeps_rows = True
        # Who is under attention, kept at each change (attention.py): asked for every
        # `attach_refresh_seconds`, it must not cost a pass over every sender.
        self.attention = AttentionIndex()
        self.apply_config(config)

    # --- configuration -----------------------------------------------------------------

    def apply_config(self, config: Config | EngineSettings) -> None:
        # The engine keeps only its own settings, never the whole Config.
        if not isinstance(config, EngineSettings):
            config = EngineSettings.from_config(config)
        self.config = config
        self.mta = config.mta
        self.half_life = config.scoring.half_life_seconds
        self.window = config.scoring.window_seconds
        self.thresholds = Thresholds.from_config(config.scoring)
        self.judge = Judge(config)
        self.judge.probation.noted = self.attention.note
        self.sasl.memory = config.scoring.sasl_memory_seconds
        self.cap.limit = config.scoring.max_senders
        self.map = SenderMap(config.customers)
        self.overrides = OverrideSet(config.overrides)

    def reload(self, config: Config | EngineSettings) -> None:
        """Take a new (validated) config and judge every sender by it again."""
        with self.lock:
            self.apply_config(config)
            now = self.clock()
            for mem in self.senders.values():
                self.classify(mem)
                evaluate(self, mem, now)
        self.dispatch()

    def classify(self, mem: SenderMemory) -> None:
        """Limits class and config override for a sender (after a reload or a new address)."""
        override = self.overrides.match(mem.key, mem.client_addr) if self.overrides else None
        mem.config_pin = override
        cls = override.limits if override is not None and override.action == "limits" else ""
        cls = cls or self.map.limits_class(mem.key)
        if cls != mem.cls:
            mem.cls = cls
            self.touch(mem)

    # --- memory --------------------------------------------------------------------------

    def mem(self, key: str, now: float, client_addr: str = "") -> SenderMemory:
        """The sender `key`, remembered from now on if it was not (call with the lock)."""
        mem = self.senders.get(key)
        if mem is None:
            mem = SenderMemory(key, now, self.window)
            self.judge.set_windows(mem)
            if (kept := self.baselines.take(key)) is not None:
                mem.baseline = kept
            mem.client_addr = client_addr
            self.senders[key] = mem
            self.classify(mem)
            self.touch(mem)
            if mem.config_pin is not None:
                evaluate(self, mem, now)  # a config override pins it from the first sight
            if self.cap.due(len(self.senders)):
                self.forget_least_recent()
        elif client_addr and client_addr != mem.client_addr:
            mem.client_addr = client_addr
            self.attention.note(mem)
            self.classify(mem)
            evaluate(self, mem, now)
        if now > mem.last_seen:
            mem.last_seen = now
        return mem

    def forget_least_recent(self) -> None:
        """Keep under `[scoring] max_senders`: the store holds the forgotten ones in full."""
        for key in self.cap.victims(self.senders, self.dirty,
                                    lambda m: pin_of(m) is not None):
            del self.senders[key]
            self.attention.drop(key)

    def after_flush(self) -> None:
        """The senders a flush wrote may be forgotten now, if memory is over the cap."""
        with self.lock:
            self.cap.retry_soon()
            if self.cap.due(len(self.senders)):
                self.forget_least_recent()

    def touch(self, mem: SenderMemory) -> None:
        mem.dirty = True
        self.dirty.add(mem.key)

    def changed(self, mem: SenderMemory, now: float) -> None:
        """New evidence on `mem`: written by the next flush, and its state judged again."""
        if mem.dirty:
            self.dirty.add(mem.key)
        # After every event, and nearly always a sender that stays `ok`: no transition to
        # look for.
        if not settled(mem, self.thresholds.watch):
            evaluate(self, mem, now)

    def shown(self, mem: SenderMemory, envelope_from: str, recipients: tuple[str, ...],
              client_addr: str, now: float) -> None:
        """Submission-time evidence, from the milter, a policy request or the log alike."""
        auth = authenticated(mem.key)
        if auth and client_addr:
            self.sasl.saw(client_addr, now)
        self.judge.submitted(mem, envelope_from=envelope_from, recipients=recipients,
                             client_addr=client_addr, authenticated=auth, sasl=self.sasl,
                             now=now)

    # --- messages whose list verdict is due ------------------------------------------------

    def settle_forgotten(self, info: MessageInfo, now: float) -> None:
        if info.list_like is None and (mem := self.message_sender(info)) is not None:
            self.judge.settle_list(mem, info, now, final=True)
            self.changed(mem, now)

    def message_sender(self, info: MessageInfo) -> SenderMemory | None:
        """The sender of a message whose list verdict is due; one the cap forgot is
        brought back (as on its next sight) so the held failures still count."""
        if not info.sender:
            return None
        mem = self.senders.get(info.sender)
        return mem if mem is not None else self.mem(info.sender, info.time)

    def housekeeping(self, now: float) -> None:
        """Every half minute (call with the lock): list verdicts now due, states that
        decayed without traffic, and idle senders with nothing to remember forgotten."""
        self.next_housekeeping = now + HOUSEKEEPING_SECONDS
        for info in self.messages.undecided_before(now - self.window):
            if (mem := self.message_sender(info)) is not None:
                self.judge.settle_list(mem, info, now, final=True)
                self.changed(mem, now)
        for info in self.messages.expire(now - MESSAGE_MEMORY_SECONDS):
            self.settle_forgotten(info, now)
        for mem in list(self.senders.values()):
            if mem.state is not State.OK:
                evaluate(self, mem, now)  # fall back as evidence decays, even without traffic
        idle = [k for k, m in self.senders.items() if self._quiet(m, now)]
        for k in idle:
            # A baseline never made (nothing learnt of the sender) needs no keeping.
            self.attention.drop(k)
            if (baseline := self.senders.pop(k).made("baseline")) is not None:
                self.baselines.keep(k, baseline)

    def _quiet(self, mem: SenderMemory, now: float) -> bool:
        """Nothing to remember `mem` for: written, ok, unpinned, negligible and idle."""
        return (mem.key not in self.dirty and mem.state is State.OK and not pin_of(mem)
                and mem.probation is None
                and mem.score(now, self.half_life) < NEGLIGIBLE_SCORE
                and now - mem.last_seen > max(self.window, self.judge.helo_window)
                and mem.rates.idle(now))

    # --- listeners -----------------------------------------------------------------------

    def add_listener(self, listener: Callable[[StateChange], None]) -> None:
        with self.lock:
            self.listeners.append(listener)

    def add_notice_listener(self, listener: Callable[[Notice], None]) -> None:
        with self.lock:
            self.notice_listeners.append(listener)

    def dispatch(self) -> None:
        """Tell listeners about notices and state changes; called with the lock released."""
        while self.notices:
            try:
                notice = self.notices.popleft()
            except IndexError:
                break
            for notice_listener in list(self.notice_listeners):
                try:
                    notice_listener(notice)
                except Exception:
                    log.exception("notice listener failed for %s", notice.sender)
        if not self.changes:
            # Nearly always (called after every event). A change queued by another
            # thread right after this check is dispatched by that thread's own call.
            return
        while True:
            try:
                change = self.changes.popleft()
            except IndexError:
                return
            for listener in list(self.listeners):
                try:
                    listener(change)
                except Exception:
                    log.exception("state change listener failed for %s", change.sender)
