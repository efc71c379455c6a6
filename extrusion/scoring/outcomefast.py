"""The common outcome, recorded in one call: a delivery judged by nothing but its count.

Nearly every outcome of a mail log is a delivery of a message the engine
knows, by a sender that stays `ok` whatever the clock says (`settled()`), off
probation, of a message that is no possible list post still waiting for its
verdict, and neither a bounce nor an auto-reply. The general path
(`Outcomes.general()`) walks classify(), the book, the judge, the
probation, the shared failure window and the transitions to do, for such
a delivery, no more than what `outcome()` below does inline; the other
calls would each only answer "nothing to do".

What the general path computes and nobody reads is left out: the
probation's failed and attempted counts (no probation), and the transition
(settled before and after: a delivery changes no score, state or pin). The
failed window is still counted: `count()` expires it, and as log times can
step back an expiry skipped now could leave an entry a later, earlier-stamped
count would not have seen. tests/test_outcome_fast.py holds the two paths
to the same memory, rows and answers over varied senders and messages.

Each attribute of a `SenderMemory` is read once here (a lazy window is a
property call, `lazyparts.py`), and the sender's key is the book's
(`senders[mem.key] is mem`), not read again.
"""

from __future__ import annotations

from collections.abc import Callable

from extrusion.scoring.book import SenderBook
from extrusion.scoring.classify import OutcomeClass
from extrusion.scoring.events import Outcome, State, Status
from extrusion.scoring.failwindow import FailureShare
from extrusion.scoring.judge import MAX_ATTEMPTED
from extrusion.scoring.rows import RecipientRow, counter_bucket, make_row

_SENT = Status.SENT
_OK = State.OK
_SENT_VALUE = Status.SENT.value  # plain strs, as `.value` gives them, for the rows
_DELIVERED_VALUE = OutcomeClass.DELIVERED.value


class FastOutcome:
    """The engine's entry for outcomes: the common delivery here, the rest to `general()`."""

    book: SenderBook
    failures: FailureShare  # the failure window shared by a store's hosts
    after_record: Callable[[], None]

    def general(self, event: Outcome) -> None:
        raise NotImplementedError

    def outcome(self, event: Outcome) -> None:
        book = self.book
        if event.status is not _SENT:
            self.general(event)
            return
        mta = event.mta or book.mta
        with book.lock:
            info = book.messages.get(mta, event.queue_id)
            # The common case, told from attributes alone; anything else takes the
            # general path, which asks for it again.
            if (info is None or info.list_like is None or info.null_sender
                    or info.auto_reply or not (sender := event.sender or info.sender)
                    or (mem := book.senders.get(sender)) is None
                    or mem.state is not _OK or mem.probation is not None or mem.pin
                    or mem.config_pin is not None
                    # settled()'s score_bound() < watch (max(x, 0.0) spelt out, NaN too):
                    # the sender stays `ok` whatever the clock says.
                    or not ((0.0 if (base := mem.base) < 0.0 else base)
                            + (0.0 if (pending := mem.pending) < 0.0 else pending)
                            < book.thresholds.watch)):
                info = None
            else:
                now, rcpt = event.time, event.recipient
                if book.keeps_rows:
                    book.batch.recipient_rows.append(make_row(RecipientRow, (
                        now, mta, event.queue_id, sender, rcpt, _SENT_VALUE, _DELIVERED_VALUE,
                        event.dsn, event.reply, event.relay,
                    )))
                    book.batch.add_counter(sender, _SENT_VALUE, counter_bucket(now))
                if now > mem.last_seen:  # what book.mem() does for a known sender
                    mem.last_seen = now
                info.finished(rcpt)
                # Judge.not_failed(): seen(), then the baseline's count.
                attempted = mem.attempted
                if attempted.count(now) < MAX_ATTEMPTED or rcpt in attempted:
                    attempted.add(rcpt.lower(), now)
                mem.baseline.outcome(True)
                failed = mem.failed.count(now)  # for its expiry: see the module's doc
                store = book.config.store
                # FailureShare.note() only when it would write something.
                if store.shared_failures and (failed >= store.shared_failures_from
                                              or sender in self.failures.written):
                    self.failures.note(mem, now, store.shared_failures_from)
                if mem.dirty:  # book.changed() of a settled sender
                    book.dirty.add(sender)
        if info is None:
            self.general(event)
            return
        self.after_record()
