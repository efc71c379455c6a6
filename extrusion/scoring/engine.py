"""The engine: events in, per-sender score and state, decisions out (`EngineAPI`).

A thin façade over parts that share one `SenderBook` (book.py: the senders,
messages and pending writes under one lock): `Recorder` and `Outcomes` take
events, `Decider` answers the MTA from memory only, `OperatorActions` pins
and releases, and `StoreSync` flushes the queued rows in one batched
transaction (or to the local spool while the store is unreachable, replayed
when it returns) and refreshes what other processes wrote. Listeners hear
about every state change after the lock is released, so they may call back
into the engine.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from extrusion.config import Config
from extrusion.scoring.actions import OperatorActions
from extrusion.scoring.api import EngineAPI
from extrusion.scoring.attention import Attention
from extrusion.scoring.book import SenderBook
from extrusion.scoring.decider import Decider
from extrusion.scoring.events import (
    Action,
    ClientEvidence,
    Connection,
    Decision,
    FlowEvidence,
    Notice,
    OperatorAction,
    Outcome,
    Refused,
    Stage,
    StateChange,
    Submission,
)
from extrusion.scoring.judge import helo_note
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.outcomes import Outcomes
from extrusion.scoring.quarantine import Quarantine
from extrusion.scoring.recording import Recorder
from extrusion.scoring.rows import Batch
from extrusion.scoring.settings import EngineSettings
from extrusion.scoring.spool import Spool
from extrusion.scoring.store import Store
from extrusion.scoring.sync import StoreSync

log = logging.getLogger("extrusion.scoring")


class Engine:
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
        self._bg_flush: threading.Thread | None = None
        self._book = book = SenderBook(config, clock)
        # False where the caller flushes at moments of its own (replay: after the same
        # lines every run); then the batch's size is never counted.
        self.flushes_when_full = True
        self.spool = Spool(config.store.spool_dir)
        self.quarantine = Quarantine(config.store.spool_dir)
        self._sync = StoreSync(book, store, self.spool, self.quarantine)
        after_record = _after_record_of(self)
        self._recorder = Recorder(book, after_record)
        self._outcomes = Outcomes(book, self._sync, after_record)
        self._decider = Decider(book)
        self._actions = OperatorActions(book)
        self._sync.load()

    # --- what adapters, tests and benchmarks read of it ---------------------------------------

    @property
    def config(self) -> EngineSettings:
        return self._book.config

    @property
    def mta(self) -> str:
        return self._book.mta

    @property
    def half_life(self) -> float:
        return self._book.half_life

    @property
    def window(self) -> float:
        return self._book.window

    @property
    def overrides(self) -> Any:
        return self._book.overrides

    @property
    def store_ok(self) -> bool:
        return self._sync.store_ok

    @property
    def last_store_error(self) -> str:
        return self._sync.last_store_error

    @property
    def memory_is_whole(self) -> bool:
        """True when no other process records messages (replay): a queue id not in
        memory is in the store neither, so an outcome never waits for or asks it."""
        return self._outcomes.memory_is_whole

    @memory_is_whole.setter
    def memory_is_whole(self, whole: bool) -> None:
        self._outcomes.memory_is_whole = whole

    @property
    def keeps_rows(self) -> bool:
        """False when nobody reads the message, recipient, counter and baseline rows (a
        replay into a throw-away store without a report): they are not even made then."""
        return self._book.keeps_rows

    @keeps_rows.setter
    def keeps_rows(self, keep: bool) -> None:
        self._book.keeps_rows = keep

    @property
    def _senders(self) -> dict[str, SenderMemory]:
        return self._book.senders

    @property
    def _lock(self) -> threading.RLock:
        return self._book.lock

    @property
    def _batch(self) -> Batch:
        return self._book.batch

    @_batch.setter
    def _batch(self, batch: Batch) -> None:
        self._book.batch = batch

    # --- configuration and keys -----------------------------------------------------------

    def reload(self, config: Config | EngineSettings) -> None:
        """Take a new (validated) config: thresholds, weights, limits, customers, overrides."""
        self._book.reload(config)

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        return self._book.map.key(client_addr, sasl_user)

    # --- events in -------------------------------------------------------------------------

    def connection(self, event: Connection) -> None:
        self._recorder.connection(event)

    def submission(self, event: Submission) -> None:
        self._recorder.submission(event)

    def outcome(self, event: Outcome) -> None:
        self._outcomes.outcome(event)

    def refused(self, event: Refused) -> None:
        self._recorder.refused(event)

    def evidence(self, event: ClientEvidence) -> None:
        self._recorder.evidence(event)

    def direct_sending(self, event: FlowEvidence) -> None:
        self._recorder.direct_sending(event)

    def operator(self, event: OperatorAction) -> StateChange | None:
        return self._actions.apply(event)

    def unresolved_outcomes(self) -> list[Outcome]:
        """The outcomes still waiting for their message's submission: only in memory, so a
        log follower keeps its checkpoint before their lines (maillog/recovery.py)."""
        return self._outcomes.waiting()

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
        d, changed = self._decider.decide(
            sender, stage, recipient_count, self.clock() if now is None else now, count,
            helos, (client_addr, client_name), envelope_from, recipient)
        if changed:
            self._book.dispatch()
        return d

    def helo_note(self, helos: tuple[str, ...], client_addr: str, client_name: str = "",
                  envelope_from: str = "") -> str:
        """The kinds of HELO anomaly in a session ("" for none), for the MTA's log."""
        return helo_note(helos, client_addr, client_name, envelope_from,
                         self._book.judge.own_domains)

    def attention(self) -> Attention:
        """The senders whose sessions the milter should see, and their last addresses
        (`scoring/attention.py`): kept as they change, so this costs the senders under
        attention after a change and nothing otherwise, whatever the senders in memory."""
        with self._lock:
            return self._book.attention.attention()

    # --- listeners -----------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[StateChange], None]) -> None:
        self._book.add_listener(listener)

    def add_notice_listener(self, listener: Callable[[Notice], None]) -> None:
        """Hear about findings that change no state (a rejection daemon found)."""
        self._book.add_notice_listener(listener)

    # --- the store -----------------------------------------------------------------------------

    def flush(self) -> None:
        with self._sync.flush_lock:
            now = self.clock()
            self._outcomes.retry(now)
            self._sync.write_out(now)
        self._book.dispatch()

    def refresh(self, now: float | None = None) -> None:
        self._sync.refresh(self.clock() if now is None else now)
        self._book.dispatch()

    def _flush_in_background(self) -> None:
        with self._book.lock:
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

    def undelivered_queue_ids(self, sender: str, mta: str = "") -> list[str]:
        mta = mta or self._book.mta
        with self._book.lock:
            ids = self._book.messages.open_queue_ids(sender, mta)
        try:
            self.flush()
            stored = self.store.undelivered_queue_ids(sender, mta)
        except Exception as exc:
            self._sync.store_failed("listing undelivered mail", exc)
            stored = []
        return list(dict.fromkeys([*stored, *ids]))

    def status(self) -> dict[str, Any]:
        """For health checks and metrics."""
        book, sync = self._book, self._sync
        with book.lock:
            return {
                "store_ok": sync.store_ok, "last_store_error": sync.last_store_error,
                "senders": len(book.senders), "queued": len(book.batch),
                "spooled_batches": len(self.spool),
                "unresolved_outcomes": len(self._outcomes.unresolved),
                "quarantined_rows": self.quarantine.rows,
                "senders_evicted": book.cap.evicted, "senders_over_cap": book.cap.over,
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


def _after_record_of(engine: Engine) -> Callable[[], None]:
    """What the engine does after every event recorded (dispatch the state changes and
    notices, flush a full batch), for its parts, without their holding the engine: no
    reference cycle, so an engine let go of is freed at once, with its senders,
    not at the cyclic collector's next full pass."""
    ref = weakref.ref(engine)
    book = engine._book  # holds no engine either

    def after_record() -> None:
        # Run after every event, which nearly never changes a state: the queues are
        # looked at here instead of in a call (nor one into the engine for them), and
        # the batch (eight lists to count) only by an engine that flushes by its size.
        if book.changes or book.notices:
            book.dispatch()
        if (e := ref()) is not None and e.flushes_when_full \
                and len(book.batch) >= book.config.store.flush_batch:
            e._flush_in_background()

    return after_record


def _implements_the_protocol(engine: Engine) -> EngineAPI:
    return engine  # mypy checks Engine against the adapters' Protocol here


def open_engine(config: Config, clock: Callable[[], float] = time.time) -> Engine:
    """An engine on the configured store; starts even while the store is unreachable."""
    store = Store(config.store.url, busy_timeout_ms=config.store.busy_timeout_ms, create=False)
    return Engine(config, store, clock, own_store=True)


def store_of(engine: object) -> Store | None:
    """The store an engine writes to, for the adapters that also read or write it
    directly (audit entries, pruning, the operator's views): None for an engine that
    has none of its own (a slot forwarding to another, a stand-in)."""
    return engine.store if isinstance(engine, Engine) else None


__all__ = ["Action", "Engine", "open_engine", "store_of"]
