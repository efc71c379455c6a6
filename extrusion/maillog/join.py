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

Memory stays bounded: state goes at `removed`, idle queue ids age out after
`ttl_seconds` of log time, and at most `max_queue_ids` are kept.

A follower that must not checkpoint past a message still open here sets
`mark` (where the line being added was read) before each line; `held_from()`
answers the mark of the oldest open message, so the checkpoint can stay there.
After a restart, lines are read again from that mark up to `reread_until`
(log time): a message met there without its beginning (client, pickup or
bounce line) was finished before the crash, and an outcome of it that has no
sender is not emitted again (it was recorded then, or dropped as a bounce's).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from extrusion.maillog.evidence import EvidenceJoin, EvidenceStats
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
from extrusion.netaddr import is_loopback, networks, parse_ip, within
from extrusion.scoring.decisions import RATE_LIMITED
from extrusion.scoring.events import ClientEvidence, Headers, Outcome, Refused, Status, Submission

STATUS = {
    "sent": Status.SENT,
    "deferred": Status.DEFERRED,
    "bounced": Status.BOUNCED,
    "expired": Status.EXPIRED,
}
log = logging.getLogger(__name__)
# A message refused at these stages never reaches the queue: its state can go.
_FINAL_STAGES = frozenset({"END-OF-MESSAGE", "DATA"})
_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]{5,20})")
_RELAY_ADDR = re.compile(r"\[(?:IPv6:)?([^\]]+)\]")
# Hand-offs whose next queue id was not logged yet, remembered at most.
LINKS_KEPT = 10_000
# How often (seconds of log time) pending submissions and idle ids are looked at.
_SWEEP_EVERY = 1.0
MAX_HELO = 255  # a HELO longer than a host name can be is cut here
_MAX_HOST_NAMES = 64  # host fields remembered as this host's or another's
_FOREIGN_SAID = 5  # other hosts' names warned about, at most
# A log says nothing about headers: one shared (immutable) empty set for every submission.
NO_HEADERS = Headers()


class EventSink(Protocol):
    def submission(self, event: Submission) -> None: ...

    def outcome(self, event: Outcome) -> None: ...

    def refused(self, event: Refused) -> None: ...

    def evidence(self, event: ClientEvidence) -> None: ...


KeyFunction = Callable[[str, str], str]  # (client_addr, sasl_user) -> sender key


@dataclass(frozen=True)
class JoinSettings:
    submissions: bool = True
    wait_seconds: float = 60.0
    ttl_seconds: float = 3 * 3600.0
    max_queue_ids: int = 200_000
    mta: str = ""  # "" = the host name in each log line
    # With `mta` unset, lines logged under these names (this machine's) are `local_mta`'s:
    # the name the milter and the engine use, so both processes' rows share one key.
    local_mta: str = ""
    local_hosts: tuple[str, ...] = ()
    handoff_relays: tuple[str, ...] = ()
    skip_replies: tuple[str, ...] = ()
    # False when a milter reports the same connections (Submission.client_evidence).
    client_evidence: bool = True
    # The log of the MTA running beside us (not a replay): other hosts' lines are news.
    live: bool = False


@dataclass
class JoinStats:
    submissions: int = 0
    outcomes: int = 0
    unattributed: int = 0  # outcomes whose client never appeared in the log
    repeated_deferrals: int = 0
    null_sender_dropped: int = 0
    handoffs: int = 0
    own_rejects_skipped: int = 0
    aged_out: int = 0
    evicted: int = 0
    reread_skipped: int = 0  # sender-less outcomes of messages finished before a restart
    clients: EvidenceStats = field(default_factory=EvidenceStats)  # maillog/evidence.py


class _Message:
    __slots__ = (
        "client_addr", "client_name", "deferred", "envelope_from", "first", "helo", "host",
        "inherited", "last", "mark", "message_id", "nrcpt", "null_sender", "pending", "qid",
        "recipients", "sasl_user", "size", "submitted", "whole",
    )

    def __init__(self, host: str, qid: str, t: float, mark: tuple[int, int]) -> None:
        self.host = host
        self.qid = qid
        self.mark = mark  # (file, offset) of its first line, for a follower's checkpoint
        self.whole = False  # its beginning was read (client, pickup, bounce or hand-off)
        self.first = t
        self.last = t
        self.client_addr = ""
        self.client_name = ""
        self.sasl_user = ""
        self.inherited = False
        self.message_id = ""
        self.helo = ""  # only when suspect: extrusion's INFO line (HeloNoted)
        self.envelope_from: str | None = None
        self.size = 0
        self.nrcpt = 0
        self.null_sender = False
        self.submitted = False
        self.pending: list[Outcome] = []
        self.recipients: dict[str, None] = {}  # insertion-ordered set
        self.deferred: set[str] = set()

    @property
    def known(self) -> bool:
        return bool(self.client_addr or self.sasl_user)


class Joiner:
    """Feed it `add(time, host, record)`; it calls the sink's submission/outcome."""

    def __init__(self, sink: EventSink, key: KeyFunction, settings: JoinSettings | None = None):
        self.sink = sink
        self.key = key
        self.settings = settings or JoinSettings()
        self.stats = JoinStats()
        self.now = 0.0
        self._msgs: dict[str, _Message] = {}  # least recently touched first
        self._opened: dict[str, _Message] = {}  # the same, in the order they were first seen
        #: Where the line being added was read (file, offset); set by a follower.
        self.mark: tuple[int, int] = (0, 0)
        #: The mark of the message whose outcome is being emitted.
        self.outcome_mark: tuple[int, int] = (0, 0)
        #: Log time up to which lines are read a second time (after a restart).
        self.reread_until = float("-inf")
        self._waiting: dict[str, float] = {}  # key -> deadline, oldest first
        self._next_sweep = 0.0
        self._keys: dict[tuple[str, str], str] = {}
        # Next-queue ids announced before their first line: (name, addr, sasl, null sender).
        self._links: dict[str, tuple[str, str, str, bool]] = {}
        self._handoff_nets = networks(self.settings.handoff_relays)
        self._skip = tuple(s.lower() for s in self.settings.skip_replies)
        self._local = dict.fromkeys(self.settings.local_hosts, self.settings.local_mta)
        self._foreign_said = 0
        self.evidence = EvidenceJoin(sink, self._sender, self.settings.mta,
                                     self.settings.client_evidence, self._known)
        self.stats.clients = self.evidence.stats
        if self.settings.mta or not self.settings.local_mta:
            self._local.clear()

    def __len__(self) -> int:
        return len(self._msgs)

    def _local_name(self, host: str) -> str:
        """A host field not seen before: this host's under another spelling, or another's.

        Remembered either way (bounded), so each new name is looked at once."""
        local = self._local.get(host.lower())
        if len(self._local) < _MAX_HOST_NAMES:
            self._local[host] = local or host
        if local is None and self.settings.live and self._foreign_said < _FOREIGN_SAID:
            self._foreign_said += 1
            log.warning("log lines of host %r are not this host's (%s): their messages are "
                        "stored under %r; if this log holds only this host's MTA, set "
                        "[general] hostname, or the milter's and the log's reports of one "
                        "message are counted apart", host[:80], self.settings.local_mta, host[:80])
        return local or host

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
            host = self._local.get(host) or self._local_name(host)
        if isinstance(record, Delivery):
            self._delivery(t, host, record)
        elif isinstance(record, ClientSeen):
            self._client(t, host, record)
        elif isinstance(record, Queued):
            m = self._get(host, record.queue_id, t)
            if m.envelope_from is None or not m.nrcpt:
                m.envelope_from = record.envelope_from
                m.size = record.size
                m.nrcpt = record.nrcpt
                self.evidence.envelope_known(host, record.queue_id)
        elif isinstance(record, Removed):
            gone = self._msgs.get(host + " " + record.queue_id)
            if gone is not None:
                self._flush(gone)
                self._drop(gone)
        elif isinstance(record, MessageIdSeen):
            self._get(host, record.queue_id, t).message_id = record.message_id
            self.evidence.message_id(host, record)
        elif isinstance(record, ClientVerdict):
            self.evidence.verdict(t, host, record)
        elif isinstance(record, FilterVerdict):
            self.evidence.filter_verdict(t, host, record)
        elif isinstance(record, HeloNoted):
            self._get(host, record.queue_id, t).helo = record.helo[:MAX_HELO]
        elif isinstance(record, Rejected):
            self._rejected(t, host, record)
        elif isinstance(record, Expired):
            self._expired(t, host, record)
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
        opened = self._opened
        horizon = self.now - self.settings.ttl_seconds
        while opened:
            key = next(iter(opened))
            m = opened[key]
            if m.first >= horizon and m.mark[0] == file and self._msgs.get(key) is m:
                return m.mark[1]
            del opened[key]
        return None

    def finish(self) -> None:
        """End of input: emit every pending submission and its outcomes."""
        for m in list(self._msgs.values()):
            self._flush(m)
        self._waiting.clear()

    # --- per record ----------------------------------------------------------------------

    def _get(self, host: str, qid: str, t: float) -> _Message:
        key = host + " " + qid
        msgs = self._msgs
        found = msgs.pop(key, None)
        if found is None:
            m = _Message(host, qid, t, self.mark)
            self._opened[key] = m
            if self._links and (parent := self._links.pop(key, None)) is not None:
                _inherit(m, *parent)
            if len(msgs) >= self.settings.max_queue_ids:
                oldest = msgs[next(iter(msgs))]
                self._flush(oldest)
                self._drop(oldest)
                self.stats.evicted += 1
        else:
            m = found
            m.last = t
        msgs[key] = m
        return m

    def _drop(self, m: _Message) -> None:
        key = m.host + " " + m.qid
        self.evidence.message_gone(m.host, m.qid)
        self._msgs.pop(key, None)
        if self._opened.get(key) is m:
            del self._opened[key]
        self._waiting.pop(key, None)

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
        if r.status == "sent" and (child := self._handoff_child(m, r)) is not None:
            self._handoff(m, r, child)
            return
        status = STATUS[r.status]
        rcpt = r.recipient
        if status is Status.DEFERRED:
            if rcpt in m.deferred:
                self.stats.repeated_deferrals += 1
                return
            m.deferred.add(rcpt)
        elif m.deferred:
            m.deferred.discard(rcpt)
        if m.null_sender:
            self.stats.null_sender_dropped += 1
            return
        outcome = Outcome(
            time=t, queue_id=m.qid, recipient=rcpt, status=status, dsn=r.dsn, reply=r.reply,
            sender=self._sender(m.client_addr, m.sasl_user) if m.known else "",
            envelope_from=m.envelope_from, mta=self.settings.mta or host, relay=r.relay,
        )
        self._route(m, outcome)

    def _route(self, m: _Message, outcome: Outcome) -> None:
        """Hold the outcome until the message's submission is out, else emit it now."""
        if outcome.recipient not in m.recipients:
            m.recipients[outcome.recipient] = None
        if m.submitted or not self.settings.submissions:
            self._emit(m, outcome)
            return
        m.pending.append(outcome)
        if not m.known or (m.nrcpt and len(m.recipients) >= m.nrcpt):
            self._flush(m)
        else:
            key = m.host + " " + m.qid
            if key not in self._waiting:
                self._waiting[key] = self.now + self.settings.wait_seconds

    def _handoff_child(self, m: _Message, r: Delivery) -> _Message | None:
        """The next queue's message, when this delivery handed the mail to a content
        filter or a second instance whose lines for it were already logged (it logs its
        client line before it answers 250). A next hop on loopback that is not logged
        (a test peer) is an ordinary delivery; should its queue id show up later after
        all, it still inherits the sender (see `_get`)."""
        if "queued as " not in r.reply:
            return None
        a = _RELAY_ADDR.search(r.relay)
        if a is None or not self._is_relay_addr(a.group(1)):
            return None
        q = _QUEUED_AS.findall(r.reply)
        if not q:
            return None
        key = m.host + " " + q[-1]
        child = self._msgs.get(key)
        if child is None and m.known:
            if len(self._links) >= LINKS_KEPT:
                self._links.pop(next(iter(self._links)))
            self._links[key] = (m.client_name, m.client_addr, m.sasl_user, m.null_sender)
        return child

    def _is_relay_addr(self, addr: str) -> bool:
        """Loopback or a configured content filter / second instance."""
        if _is_loopback(addr):
            return True
        if not self._handoff_nets:
            return False
        ip = parse_ip(addr)
        return ip is not None and within(ip, self._handoff_nets)

    def _handoff(self, m: _Message, r: Delivery, child: _Message) -> None:
        self.stats.handoffs += 1
        if r.recipient not in m.recipients:
            m.recipients[r.recipient] = None
        if not m.submitted and m.nrcpt and len(m.recipients) >= m.nrcpt and not m.pending:
            # Every recipient went on to the next queue: this copy is no submission.
            m.submitted = True
            self._waiting.pop(m.host + " " + m.qid, None)
        if m.known and (not child.known or self._is_relay_addr(child.client_addr)):
            _inherit(child, m.client_name, m.client_addr, m.sasl_user, m.null_sender)

    def _held(self, m: _Message, r: Held) -> None:
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
        self._count(outcome)
        self.sink.outcome(outcome)
        if m is not None and r.stage in _FINAL_STAGES:
            # A filter milter's refusal names the envelope no qmgr line will: its verdict,
            # logged just before, is judged with it (a forwarder's SRS) as the message ends.
            if m.envelope_from is None:
                m.envelope_from = r.envelope_from
            self.evidence.envelope_known(host, m.qid)
            self._drop(m)

    def _expired(self, t: float, host: str, r: Expired) -> None:
        m = self._get(host, r.queue_id, t)
        if m.envelope_from is None:
            m.envelope_from = r.envelope_from
        for rcpt in sorted(m.deferred):
            if m.null_sender:
                self.stats.null_sender_dropped += 1
                continue
            self._route(m, Outcome(
                time=t, queue_id=m.qid, recipient=rcpt, status=Status.EXPIRED,
                sender=self._sender(m.client_addr, m.sasl_user) if m.known else "",
                envelope_from=m.envelope_from, mta=self.settings.mta or host,
            ))
        m.deferred.clear()
        self._flush(m)

    # --- emitting ------------------------------------------------------------------------

    def _flush(self, m: _Message) -> None:
        if not m.submitted:
            m.submitted = True
            self._waiting.pop(m.host + " " + m.qid, None)
            if self.settings.submissions and m.known and not m.null_sender:
                self.sink.submission(Submission(
                    time=m.first, sender=self._sender(m.client_addr, m.sasl_user),
                    queue_id=m.qid, envelope_from=m.envelope_from or "",
                    recipients=tuple(m.recipients), size=m.size,
                    mta=self.settings.mta or m.host, client_addr=m.client_addr,
                    client_name=m.client_name, message_id=m.message_id, headers=NO_HEADERS,
                    client_evidence=self.settings.client_evidence,
                    helos=(m.helo,) if m.helo else (),
                ))
                self.stats.submissions += 1
        if m.pending:
            pending, m.pending = m.pending, []
            for outcome in pending:
                self._emit(m, outcome)

    def _emit(self, m: _Message, outcome: Outcome) -> None:
        if not outcome.sender and m.known:
            outcome = _with_sender(outcome, self._sender(m.client_addr, m.sasl_user))
        if not outcome.sender and not m.whole and outcome.time <= self.reread_until:
            self.stats.reread_skipped += 1
            return
        self._count(outcome)
        self.outcome_mark = m.mark
        self.sink.outcome(outcome)

    def _count(self, outcome: Outcome) -> None:
        self.stats.outcomes += 1
        if not outcome.sender:
            self.stats.unattributed += 1

    def _sender(self, addr: str, user: str) -> str:
        k = (addr, user)
        s = self._keys.get(k)
        if s is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            s = self._keys[k] = self.key(addr, user)
        return s

    def forget_keys(self) -> None:
        """Drop cached sender keys (after a config reload changed the customer map)."""
        self._keys.clear()

    def _sweep(self) -> None:
        now = self.now
        waiting = self._waiting
        while waiting:
            key = next(iter(waiting))
            if waiting[key] > now:
                break
            del waiting[key]
            m = self._msgs.get(key)
            if m is not None:
                self._flush(m)
        msgs = self._msgs
        horizon = now - self.settings.ttl_seconds
        while msgs:
            m = msgs[next(iter(msgs))]
            if m.last > horizon:
                break
            self._flush(m)
            self._drop(m)
            self.stats.aged_out += 1


def _inherit(child: _Message, name: str, addr: str, sasl_user: str, null_sender: bool) -> None:
    """The next queue's copy belongs to whoever sent the first."""
    child.client_name, child.client_addr, child.sasl_user = name, addr, sasl_user
    child.inherited = True
    child.whole = True
    child.null_sender = child.null_sender or null_sender


def _with_sender(o: Outcome, sender: str) -> Outcome:
    return replace(o, sender=sender)


def _is_loopback(addr: str) -> bool:
    # The two common spellings first: this runs for every delivery line.
    return addr.startswith("127.") or addr == "::1" or is_loopback(addr)
