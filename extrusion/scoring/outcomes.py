"""A delivery outcome, from the log: the recipient's row, and the evidence it is.

An outcome names its message by queue id; the submission may be in this
process's memory, in the store (the other process recorded it), or in
neither yet: then the outcome waits, bounded, and is tried again at every
flush (`retry()`), recorded without a sender only once nobody has the
submission after `UNRESOLVED_RETRY_SECONDS`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from extrusion.scoring.book import SenderBook
from extrusion.scoring.classify import OutcomeClass, classify, is_failure
from extrusion.scoring.events import Notice, Outcome, Status
from extrusion.scoring.kinds import Kind
from extrusion.scoring.memory import SenderMemory, copy_findings
from extrusion.scoring.outcomefast import FastOutcome
from extrusion.scoring.rows import RecipientRow, counter_bucket, make_row
from extrusion.scoring.sync import StoreSync
from extrusion.scoring.tracker import MessageInfo

# An outcome whose queue id no process has recorded yet is retried this long.
UNRESOLVED_RETRY_SECONDS = 300.0
MAX_UNRESOLVED = 100_000
FINAL = frozenset({Status.SENT, Status.BOUNCED, Status.EXPIRED, Status.REJECTED})
# Read for every outcome: a member read from its enum class is a lookup each time.
_REJECTED = Status.REJECTED
_DELIVERED = OutcomeClass.DELIVERED


class Outcomes(FastOutcome):
    """Records outcomes into the book; asks the store for submissions it lacks. The
    common delivery is recorded by `FastOutcome.outcome()`, every other one here."""

    def __init__(self, book: SenderBook, sync: StoreSync,
                 after_record: Callable[[], None]) -> None:
        self.book = book
        self.sync = sync
        self.after_record = after_record  # the engine's dispatch and flush trigger
        self.unresolved: deque[tuple[float, Outcome]] = deque()
        # True when no other process records messages (replay): a queue id not in
        # memory is in the store neither, so an outcome never waits for or asks it.
        self.memory_is_whole = False
        self.failures = sync.others.failures
        self.general_count = 0  # outcomes that took this path, not the common delivery's

    def general(self, event: Outcome) -> None:
        """Any outcome (`outcome()` sends here all but the common delivery)."""
        self.general_count += 1
        book = self.book
        mta = event.mta or book.mta
        with book.lock:
            info = book.messages.get(mta, event.queue_id)
        if info is None and self.sync.store_ok and not self.memory_is_whole:
            # Recorded by another process (the milter), or sender unknown: ask the store.
            info = self.sync.lookup_message(mta, event.queue_id)
        if info is None and not event.sender and not self.memory_is_whole:
            with book.lock:
                if len(self.unresolved) < MAX_UNRESOLVED:
                    # Its submission may still sit in another process's write queue.
                    self.unresolved.append((book.clock(), event))
                    return
        self.record(event, mta, info, event.sender or (info.sender if info else ""))
        self.after_record()

    def record(self, event: Outcome, mta: str, info: MessageInfo | None,
               sender: str) -> None:
        """The recipient's row and, when the sender is known, the evidence it is."""
        book = self.book
        cls = classify(event.status, event.dsn, event.reply)
        now = event.time
        with book.lock:
            if book.keeps_rows:
                book.batch.recipient_rows.append(make_row(RecipientRow, (
                    now, mta, event.queue_id, sender, event.recipient, event.status.value,
                    cls.value, event.dsn, event.reply, event.relay,
                )))
                if sender:
                    book.batch.add_counter(sender, event.status.value, counter_bucket(now))
            if not sender:
                return  # nobody to judge: kept for the record only
            mem = book.mem(sender, now)
            if info is not None and event.status in FINAL:
                info.finished(event.recipient)
            self._judge(mem, event, cls, info, now)
            if book.config.store.shared_failures:
                self.sync.others.failures.note(mem, now,
                                               book.config.store.shared_failures_from)
            book.changed(mem, now)

    def _judge(self, mem: SenderMemory, event: Outcome, cls: OutcomeClass,
               info: MessageInfo | None, now: float) -> None:
        judge = self.book.judge
        own_refusal = event.status is _REJECTED and not judge.mx
        # A delivery (nearly every outcome) is no failure: told without asking is_failure().
        if cls is _DELIVERED or not is_failure(cls) or own_refusal:
            # Delivered, deferred (counts only if it later bounces or expires), or
            # refused by this MTA itself (often extrusion's own enforcement).
            if not own_refusal:
                judge.not_failed(mem, info, event.recipient,
                                 cls is _DELIVERED, now)
            # Only a possible list post still waiting for its verdict reads its attempts.
            if info is not None and info.list_like is None:
                judge.attempted(mem, info, event.recipient, now)
        elif judge.forwarded(mem, _envelope(event, info), event.client_name, now,
                             refusal=cls):
            if info is not None:  # our filter refused forwarded mail: not the forwarder's
                judge.attempted(mem, info, event.recipient, now)
        else:
            null = info.null_sender if info is not None else event.envelope_from == ""
            was = _misconfigured(mem)
            judge.failure(mem, info, event.recipient, cls, now, null)
            if not was and _misconfigured(mem):
                self._notice_misconfigured(mem, now)

    def _notice_misconfigured(self, mem: SenderMemory, now: float) -> None:
        f = mem.findings[Kind.MISCONFIGURED]
        self.book.notices.append(Notice(
            time=now, sender=mem.key, kind=Kind.MISCONFIGURED,
            score=round(mem.score(now, self.book.half_life), 3),
            reason=f"rejection daemon: {f.get('failed_auto_replies', 0)} auto-replies "
                   "without <> failed", evidence=copy_findings(mem.findings)))

    def waiting(self) -> list[Outcome]:
        with self.book.lock:
            return [event for _since, event in self.unresolved]

    def retry(self, now: float) -> None:
        """Outcomes whose submission was not known yet: look again, or record them as such."""
        book = self.book
        with book.lock:
            pending, self.unresolved = self.unresolved, deque()
        for since, event in pending:
            mta = event.mta or book.mta
            with book.lock:
                info = book.messages.get(mta, event.queue_id)
            if info is None and self.sync.store_ok:
                info = self.sync.lookup_message(mta, event.queue_id)
            if info is not None:
                self.record(event, mta, info, info.sender)
            elif now - since < UNRESOLVED_RETRY_SECONDS or not self.sync.store_ok:
                # Keep asking (and never give up while the store cannot even be asked).
                with book.lock:
                    self.unresolved.append((since, event))
            else:
                self.record(event, mta, None, "")


def _misconfigured(mem: SenderMemory) -> bool:
    return bool(mem.findings.get(Kind.MISCONFIGURED, {}).get("rejection_daemon"))


def _envelope(event: Outcome, info: MessageInfo | None) -> str:
    if event.envelope_from is not None:
        return event.envelope_from
    return info.envelope_from if info is not None else ""
