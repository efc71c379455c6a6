"""When a joined message's events go out, and how they are built.

A message's `Submission` waits until every recipient had a first attempt
(Postfix's `nrcpt`), the message is removed, or `wait_seconds` of log time
passed; its outcomes wait behind it, so the engine sees the submission first.
Outcomes of a message finished before a restart that are read again without
a sender are not emitted twice (see `extrusion.maillog.join`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from extrusion.maillog.joinstate import EventSink, JoinSettings, JoinStats, KeyFunction, OpenMessage
from extrusion.scoring.events import Headers, Outcome, Status, Submission

# (time, queue_id, recipient, status, dsn, reply, sender, envelope_from, mta, relay)
OutcomeFields = Callable[[float, str, str, Status, str, str, str, "str | None", str, str], None]
# (time, sender, queue_id, envelope_from, recipients, size, mta, client_addr, client_name,
# helos, message_id): a `Submission`'s fields a log fills
SubmissionFields = Callable[[float, str, str, str, tuple[str, ...], int, str, str, str,
                             tuple[str, ...], str], None]
# A log says nothing about headers: one shared (immutable) empty set for every submission.
NO_HEADERS = Headers()
# Sender keys cached at most, (address, SASL user) -> key; the cache starts over beyond.
KEYS_CACHED = 100_000


class Emitter:
    def __init__(self, sink: EventSink, key: KeyFunction, settings: JoinSettings,
                 stats: JoinStats, msgs: dict[str, OpenMessage]) -> None:
        self.sink = sink
        self.key = key
        self.settings = settings
        self.stats = stats
        self._msgs = msgs  # the joiner's open messages, by "host qid"
        # key -> deadline, oldest first; an OrderedDict so `due()` finds the oldest in
        # constant time (a plain dict walks the slots its deletions left).
        self.waiting: OrderedDict[str, float] = OrderedDict()
        #: The mark of the message whose outcome is being emitted.
        self.outcome_mark: tuple[int, int] = (0, 0)
        #: Log time up to which lines are read a second time (after a restart).
        self.reread_until = float("-inf")
        self._keys: dict[tuple[str, str], str] = {}
        #: An outcome going out, from its fields: a sink that encodes them itself (the
        #: replay's reader) is spared an `Outcome` it would only read again.
        self.outcome_now: OutcomeFields = getattr(sink, "outcome_fields", self._outcome)
        #: A submission going out, from the fields a log fills; as `outcome_now`.
        self.submission_now: SubmissionFields = getattr(sink, "submission_fields",
                                                        self._submission)

    def route(self, m: OpenMessage, outcome: Outcome, now: float) -> None:
        """Hold the outcome until the message's submission is out, else emit it now."""
        if outcome.recipient not in m.recipients:
            m.recipients[outcome.recipient] = None
        if m.submitted or not self.settings.submissions:
            self.emit(m, outcome)
            return
        m.pending.append(outcome)
        if not m.known or (m.nrcpt and len(m.recipients) >= m.nrcpt):
            self.flush(m)
        else:
            key = m.host + " " + m.qid
            if key not in self.waiting:
                self.waiting[key] = now + self.settings.wait_seconds

    def attempt(self, m: OpenMessage, t: float, rcpt: str, status: Status, dsn: str,
                reply: str, relay: str, mta: str, now: float) -> None:
        """`route()` of a delivery attempt's outcome (not a hand-off's, not a bounce's):
        no `Outcome` made when it goes out at once (see `outcome_now`)."""
        recipients = m.recipients
        if rcpt not in recipients:
            recipients[rcpt] = None
        known = m.client_addr or m.sasl_user
        sender = ""
        if known:  # `sender()`, its cache read inline
            sender = self._keys.get((m.client_addr, m.sasl_user)) or self.sender(
                m.client_addr, m.sasl_user)
        if not m.submitted and self.settings.submissions:
            if known and not (m.nrcpt and len(recipients) >= m.nrcpt):
                m.pending.append(Outcome(t, m.qid, rcpt, status, dsn, reply, sender,
                                         m.envelope_from, mta, relay))
                key = m.host + " " + m.qid
                if key not in self.waiting:
                    self.waiting[key] = now + self.settings.wait_seconds
                return
            self.flush(m)  # the submission first, and what waited behind it; then this
        # `emit()`, inline: the sender is known or will not be any more.
        if not sender and not m.whole and t <= self.reread_until:
            self.stats.reread_skipped += 1
            return
        stats = self.stats
        stats.outcomes += 1
        if not sender:
            stats.unattributed += 1
        self.outcome_mark = m.mark
        self.outcome_now(t, m.qid, rcpt, status, dsn, reply, sender, m.envelope_from, mta,
                         relay)

    def _outcome(self, t: float, qid: str, rcpt: str, status: Status, dsn: str, reply: str,
                 sender: str, envelope_from: str | None, mta: str, relay: str) -> None:
        # Positional: a third cheaper than by keyword, for nearly every outcome.
        self.sink.outcome(Outcome(t, qid, rcpt, status, dsn, reply, sender, envelope_from,
                                  mta, relay))

    def expired(self, m: OpenMessage, t: float, mta: str, now: float) -> None:
        """The message expired in the queue: each still-deferred recipient gets `expired`."""
        for rcpt in sorted(m.deferred or ()):
            if m.null_sender:
                self.stats.null_sender_dropped += 1
                continue
            self.route(m, Outcome(
                time=t, queue_id=m.qid, recipient=rcpt, status=Status.EXPIRED,
                sender=self.sender(m.client_addr, m.sasl_user) if m.known else "",
                envelope_from=m.envelope_from, mta=mta,
            ), now)
        m.deferred = None
        self.flush(m)

    def flush(self, m: OpenMessage) -> None:
        """The submission now (once), then every outcome held behind it."""
        if not m.submitted:
            m.submitted = True
            self.waiting.pop(m.host + " " + m.qid, None)
            s = self.settings
            if s.submissions and (m.client_addr or m.sasl_user) and not m.null_sender:
                self.submission_now(
                    m.first, self.sender(m.client_addr, m.sasl_user), m.qid,
                    m.envelope_from or "", tuple(m.recipients), m.size, s.mta or m.host,
                    m.client_addr, m.client_name, (m.helo,) if m.helo else (), m.message_id)
                self.stats.submissions += 1
        if m.pending:
            pending, m.pending = m.pending, []
            for outcome in pending:
                self.emit(m, outcome)

    def _submission(self, t: float, sender: str, qid: str, envelope_from: str,
                    recipients: tuple[str, ...], size: int, mta: str, client_addr: str,
                    client_name: str, helos: tuple[str, ...], message_id: str) -> None:
        # Positional, in the fields' order (a third cheaper than by keyword).
        self.sink.submission(Submission(
            t, sender, qid, envelope_from, recipients, size, mta, client_addr, client_name,
            helos, NO_HEADERS, message_id, (), self.settings.client_evidence,
        ))

    def emit(self, m: OpenMessage, outcome: Outcome) -> None:
        if not outcome.sender and m.known:
            outcome = replace(outcome, sender=self.sender(m.client_addr, m.sasl_user))
        if not outcome.sender and not m.whole and outcome.time <= self.reread_until:
            self.stats.reread_skipped += 1
            return
        stats = self.stats  # count(), inline: once per outcome
        stats.outcomes += 1
        if not outcome.sender:
            stats.unattributed += 1
        self.outcome_mark = m.mark
        self.sink.outcome(outcome)

    def count(self, outcome: Outcome) -> None:
        self.stats.outcomes += 1
        if not outcome.sender:
            self.stats.unattributed += 1

    def sender(self, addr: str, user: str) -> str:
        k = (addr, user)
        s = self._keys.get(k)
        if s is None:
            if len(self._keys) > KEYS_CACHED:
                self._keys.clear()
            s = self._keys[k] = self.key(addr, user)
        return s

    def forget_keys(self) -> None:
        """Drop cached sender keys (after a config reload changed the customer map)."""
        self._keys.clear()

    def due(self, now: float) -> None:
        """Flush every message whose wait for its last recipients is over."""
        waiting = self.waiting
        while waiting:
            key = next(iter(waiting))
            if waiting[key] > now:
                break
            del waiting[key]
            m = self._msgs.get(key)
            if m is not None:
                self.flush(m)
