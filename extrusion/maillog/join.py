"""Join records per queue id into the engine's events (Submission, Outcome).

A message's lines are scattered through the log: the client (smtpd), the
envelope (qmgr), then one line per recipient attempt, perhaps days apart.
`Joiner` keeps a little state per queue id and emits:

- one `Submission` per message from a known client, once every recipient
  has had a first attempt (Postfix's `nrcpt` says how many), or the message
  is removed, or `wait_seconds` of log time have passed — so the engine sees
  the real recipient count (mailing lists, single-recipient auto-replies);
- one `Outcome` per recipient result, with the sender key filled in when the
  client is known (else "" and the engine finds it by queue id). A recipient
  deferred again and again is reported deferred once; when the message expires,
  each still-deferred recipient gets an `expired` outcome.

Mail handed to a content filter or a second instance on the same host
(`relay=…[127.0.0.1]…, status=sent (250 … queued as NEWQID)`) is not an
outcome: the identity moves to NEWQID, whose deliveries are the real ones.
Bounces the MTA creates (`sender non-delivery notification: NEWQID`) carry
the null sender; their failures are never anyone's evidence and are dropped.

The open messages and settings live in `joinstate.py`, hand-offs in `handoff.py`,
building and timing the events in `emit.py`. Memory stays bounded: state goes at
`removed`, idle queue ids age out after `ttl_seconds` of log time, and at most
`max_queue_ids` are kept.

A follower that must not checkpoint past a message still open here sets
`mark` (where the line being added was read) before each line; `held_from()`
answers the mark of the oldest open message, so the checkpoint can stay there.
After a restart, lines are read again from that mark up to `reread_until`
(log time): a message met there without its beginning (client, pickup or
bounce line) was finished before the crash, and an outcome of it that has no
sender is not emitted again (it was recorded then, or dropped as a bounce's).
"""

from __future__ import annotations

from collections import OrderedDict

from extrusion.maillog.emit import NO_HEADERS as NO_HEADERS  # re-exported for replay
from extrusion.maillog.emit import Emitter
from extrusion.maillog.evidence import EvidenceJoin
from extrusion.maillog.handoff import Handoffs
from extrusion.maillog.joinstate import EventSink as EventSink  # re-exported for adapters
from extrusion.maillog.joinstate import (
    JoinSettings,
    JoinStats,
    KeyFunction,
    LocalNames,
    OpenMessage,
    held_from,
    inherit,
)
from extrusion.maillog.records import (
    BounceNotice,
    ClientSeen,
    ClientVerdict,
    Delivery,
    Expired,
    FilterVerdict,
    Held,
    HeloNoted,
    LocalSubmission,
    MessageIdSeen,
    Queued,
    Record,
    Rejected,
    Removed,
    SaslSeen,
)
from extrusion.scoring.decisions import RATE_LIMITED
from extrusion.scoring.events import Outcome, Refused, Status

__all__ = ["NO_HEADERS", "EventSink", "JoinSettings", "JoinStats", "Joiner", "KeyFunction"]

STATUS = {
    "sent": Status.SENT,
    "deferred": Status.DEFERRED,
    "bounced": Status.BOUNCED,
    "expired": Status.EXPIRED,
}
# Asked of every delivery line: a member read from its enum class is a lookup each time.
_DEFERRED = Status.DEFERRED
# A message refused at these stages never reaches the queue: its state can go.
_FINAL_STAGES = frozenset({"END-OF-MESSAGE", "DATA"})
# How often (seconds of log time) pending submissions and idle ids are looked at.
_SWEEP_EVERY = 1.0
MAX_HELO = 255  # a HELO longer than a host name can be is cut here


class Joiner:
    """Feed it `add(time, host, record)`; it calls the sink's submission/outcome."""

    def __init__(self, sink: EventSink, key: KeyFunction, settings: JoinSettings | None = None):
        self.sink = sink
        self.settings = settings or JoinSettings()
        self.stats = JoinStats()
        self.now = 0.0
        # Read from the oldest end as entries come and go: a dict's `next(iter(d))` walks
        # the slots its deletions left (a flood of new queue ids made that most of the work).
        self._msgs: OrderedDict[str, OpenMessage] = OrderedDict()  # least recently touched first
        self._opened: OrderedDict[str, OpenMessage] = OrderedDict()  # the same, by first sight
        #: Where the line being added was read (file, offset); set by a follower.
        self.mark: tuple[int, int] = (0, 0)
        self._next_sweep = 0.0
        self.out = Emitter(sink, key, self.settings, self.stats, self._msgs)
        # Bound once: these run for nearly every line.
        self._flush, self._route, self._sender = self.out.flush, self.out.route, self.out.sender
        self._handoffs = Handoffs(self.settings.handoff_relays)
        self._links = self._handoffs.links
        self._is_relay_addr = self._handoffs.is_relay_addr
        self._skip = tuple(s.lower() for s in self.settings.skip_replies)
        self._mta = self.settings.mta
        self.names = LocalNames(self.settings)
        self._local = self.names.known  # read for every line: bound once
        self.evidence = EvidenceJoin(sink, self._sender, self.settings.mta,
                                     self.settings.client_evidence, self._known)
        self.stats.clients = self.evidence.stats
        self._early = self.evidence.early  # read as each message ends: bound once

    def __len__(self) -> int:
        return len(self._msgs)

    @property
    def outcome_mark(self) -> tuple[int, int]:
        """The mark of the message whose outcome is being emitted."""
        return self.out.outcome_mark

    @property
    def reread_until(self) -> float:
        """Log time up to which lines are read a second time (after a restart)."""
        return self.out.reread_until

    @reread_until.setter
    def reread_until(self, t: float) -> None:
        self.out.reread_until = t

    def forget_keys(self) -> None:
        """Drop cached sender keys (after a config reload changed the customer map)."""
        self.out.forget_keys()

    # --- entry point ---------------------------------------------------------------------

    def advance(self, t: float) -> None:
        """Log time moved on (any line, or the daemon's clock on a quiet syslog feed)."""
        if t > self.now:
            self.now = t
            if t >= self._next_sweep:
                self._sweep()
                self._next_sweep = t + _SWEEP_EVERY

    def add(self, t: float, host: str, record: Record) -> None:
        if t > self.now:
            self.advance(t)
        if self._local:
            host = self._local.get(host) or self.names.new(host)
        if isinstance(record, Delivery):
            self._delivery(t, host, record)
        elif isinstance(record, ClientSeen):
            self._client(t, host, record)
        elif isinstance(record, Queued):
            self._queued(t, host, record.queue_id, record.envelope_from, record.size,
                         record.nrcpt)
        elif isinstance(record, Removed):
            self._removed(host, record.queue_id)
        elif isinstance(record, MessageIdSeen):
            self._message_id(t, host, record.queue_id, record.message_id)
        else:
            self._rare(t, host, record)

    def _rare(self, t: float, host: str, record: Record) -> None:
        """The records a few messages have: checked after the common ones."""
        if isinstance(record, ClientVerdict):
            self.evidence.verdict(t, host, record)
        elif isinstance(record, FilterVerdict):
            self.evidence.filter_verdict(t, host, record)
        elif isinstance(record, HeloNoted):
            self._get(host, record.queue_id, t).helo = record.helo[:MAX_HELO]
        elif isinstance(record, Rejected):
            self._rejected(t, host, record)
        elif isinstance(record, Expired):
            m = self._get(host, record.queue_id, t)
            if m.envelope_from is None:
                m.envelope_from = record.envelope_from
            self.out.expired(m, t, self.settings.mta or host, self.now)
        elif isinstance(record, BounceNotice):
            child = self._get(host, record.new_queue_id, t)
            child.whole = True
            child.null_sender = True
            child.envelope_from = ""
        elif isinstance(record, SaslSeen):
            self._get(host, record.queue_id, t).sasl_user = record.sasl_user
        elif isinstance(record, LocalSubmission):
            m = self._get(host, record.queue_id, t)
            m.envelope_from = record.envelope_from
            m.whole = True
        elif isinstance(record, Held):
            m = self._get(host, record.queue_id, t)
            m.whole = True
            if record.client_addr or record.recipient:
                self._held(m, record)

    def _known(self, host: str, qid: str) -> tuple[str, str, str, str | None] | None:
        """A message's client (address, name), SASL user and envelope sender, when its
        client is known."""
        m = self._msgs.get(host + " " + qid)
        if m is None or not m.known:
            return None
        return m.client_addr, m.client_name, m.sasl_user, m.envelope_from

    def held_from(self, file: int) -> int | None:
        """The offset in `file` of the first line of the oldest message still open, or None.

        A message first seen more than `ttl_seconds` (log time) ago, or in another file
        (before a rotation), holds nothing back any more: re-reading after a crash stays
        bounded, and a message deferred for days does not pin the checkpoint."""
        return held_from(self._opened, self._msgs, file, self.now - self.settings.ttl_seconds)

    def finish(self) -> None:
        """End of input: emit every pending submission and its outcomes."""
        for m in list(self._msgs.values()):
            self._flush(m)
        self.out.waiting.clear()

    # --- per record ----------------------------------------------------------------------

    def _get(self, host: str, qid: str, t: float) -> OpenMessage:
        key = host + " " + qid
        msgs = self._msgs
        found = msgs.get(key)
        if found is None:
            m = OpenMessage(host, qid, t, self.mark)
            self._opened[key] = m
            if self._links and (parent := self._links.pop(key, None)) is not None:
                inherit(m, *parent)
            if len(msgs) >= self.settings.max_queue_ids:
                oldest = msgs[next(iter(msgs))]  # constant time: an OrderedDict
                self._flush(oldest)
                self._drop(oldest)
                self.stats.evicted += 1
            msgs[key] = m
        else:
            m = found
            m.last = t
            msgs.move_to_end(key)
        return m

    def _drop(self, m: OpenMessage) -> None:
        key = m.host + " " + m.qid
        if self._early:  # a spam filter's verdict waits for some message (rare)
            self.evidence.message_gone(m.host, m.qid)
        self._msgs.pop(key, None)
        if self._opened.get(key) is m:
            del self._opened[key]
        self.out.waiting.pop(key, None)

    def _queued(self, t: float, host: str, qid: str, envelope_from: str, size: int,
                nrcpt: int) -> None:
        m = self._get(host, qid, t)
        if m.envelope_from is None or not m.nrcpt:
            m.envelope_from, m.size, m.nrcpt = envelope_from, size, nrcpt
            if self._early:  # a spam filter's verdict waits for some envelope (rare)
                self.evidence.envelope_known(host, qid)

    def _removed(self, host: str, qid: str) -> None:
        gone = self._msgs.get(host + " " + qid)
        if gone is not None:
            self._flush(gone)
            self._drop(gone)

    def _message_id(self, t: float, host: str, qid: str, message_id: str) -> None:
        self._get(host, qid, t).message_id = message_id
        if message_id:  # what EvidenceJoin.message_id() keeps
            self.evidence.remember_message_id(host, message_id, qid)

    def _client(self, t: float, host: str, r: ClientSeen) -> None:
        m = self._get(host, r.queue_id, t)
        m.whole = True
        if r.orig_client_addr:
            # Re-injected by a content filter with XFORWARD: the original client counts.
            m.client_name, m.client_addr = r.orig_client_name, r.orig_client_addr
            m.inherited = True
        elif not (m.inherited and self._is_relay_addr(r.client_addr)):
            m.client_name, m.client_addr = r.client_name, r.client_addr
        if r.sasl_user:
            m.sasl_user = r.sasl_user

    def _delivery(self, t: float, host: str, r: Delivery) -> None:
        m = self._get(host, r.queue_id, t)
        if r.status == "sent" and (child := self._handoffs.child(self._msgs, m, r)) is not None:
            self._handoff(m, r, child)
            return
        status = STATUS[r.status]
        rcpt = r.recipient
        if status is _DEFERRED:
            if m.deferred is None:
                m.deferred = set()
            elif rcpt in m.deferred:
                self.stats.repeated_deferrals += 1
                return
            m.deferred.add(rcpt)
        elif m.deferred:
            m.deferred.discard(rcpt)
        if m.null_sender:
            self.stats.null_sender_dropped += 1
            return
        # Positional (time, queue_id, recipient, status, dsn, reply, sender, envelope_from,
        # mta, relay): a third cheaper than by keyword, for nearly every outcome.
        outcome = Outcome(
            t, m.qid, rcpt, status, r.dsn, r.reply,
            self._sender(m.client_addr, m.sasl_user) if m.known else "",
            m.envelope_from, self._mta or host, r.relay,
        )
        self._route(m, outcome, self.now)

    def _handoff(self, m: OpenMessage, r: Delivery, child: OpenMessage) -> None:
        self.stats.handoffs += 1
        if r.recipient not in m.recipients:
            m.recipients[r.recipient] = None
        if not m.submitted and m.nrcpt and len(m.recipients) >= m.nrcpt and not m.pending:
            # Every recipient went on to the next queue: this copy is no submission.
            m.submitted = True
            self.out.waiting.pop(m.host + " " + m.qid, None)
        if m.known and (not child.known or self._is_relay_addr(child.client_addr)):
            inherit(child, m.client_name, m.client_addr, m.sasl_user, m.null_sender)

    def _held(self, m: OpenMessage, r: Held) -> None:
        """Held on arrival (`hold:` from a policy or check, `milter-hold:`): the message
        waits in the hold queue and reaches qmgr only once released, if ever, so this
        line is its submission. Recorded at once, so that a release finds it by queue id
        even after every process restarted."""
        if not m.known and r.client_addr:
            m.client_name, m.client_addr = r.client_name, r.client_addr
        if m.envelope_from is None:
            m.envelope_from = r.envelope_from
        if r.recipient and r.recipient not in m.recipients:
            m.recipients[r.recipient] = None
        self._flush(m)

    def _rejected(self, t: float, host: str, r: Rejected) -> None:
        m = self._msgs.get(host + " " + r.queue_id) if r.queue_id else None
        if m is not None and m.known:
            addr, user = m.client_addr, m.sasl_user
        else:
            addr, user = r.client_addr, ""
        if RATE_LIMITED in r.reply:
            # Our own refusal of a rate-limited sender, never a delivery failure. Live, the
            # engine counted it as it answered; a replay reads it here, so that a throttled
            # sender pushing on gathers the same evidence.
            self.stats.own_rejects_skipped += 1
            if not self.settings.live and r.stage == "RCPT" and r.recipient and (addr or user):
                self.sink.refused(Refused(t, self._sender(addr, user), r.recipient))
            return
        if self._skip and any(s in r.reply.lower() for s in self._skip):
            self.stats.own_rejects_skipped += 1
            return
        if addr:
            name = m.client_name if m is not None and m.known else r.client_name
            self.evidence.session(t, host, addr, user, r.helo, r.envelope_from, r.recipient,
                                  name)
        envelope_from = r.envelope_from
        outcome = Outcome(
            time=t, queue_id=r.queue_id, recipient=r.recipient, status=Status.REJECTED,
            dsn=r.dsn, reply=f"{r.code} {r.dsn} {r.reply}".strip(),
            sender=self._sender(addr, user) if addr or user else "",
            envelope_from=envelope_from, mta=self.settings.mta or host,
            client_name=m.client_name if m is not None and m.known else r.client_name,
        )
        self.out.count(outcome)
        self.sink.outcome(outcome)
        if m is not None and r.stage in _FINAL_STAGES:
            # A filter milter's refusal names the envelope no qmgr line will: its verdict,
            # logged just before, is judged with it (a forwarder's SRS) as the message ends.
            if m.envelope_from is None:
                m.envelope_from = r.envelope_from
            self.evidence.envelope_known(host, m.qid)
            self._drop(m)

    def _sweep(self) -> None:
        now = self.now
        self.out.due(now)
        msgs = self._msgs
        horizon = now - self.settings.ttl_seconds
        while msgs:
            m = msgs[next(iter(msgs))]
            if m.last > horizon:
                break
            self._flush(m)
            self._drop(m)
            self.stats.aged_out += 1
