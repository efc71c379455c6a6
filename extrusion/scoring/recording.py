"""Events in, besides outcomes (outcomes.py): a connection, a submission, the log's
other evidence about a client, flow records, a refusal read from the log.

Each updates the sender's memory at once and queues rows for the next flush;
`after_record` (the engine's) then tells listeners and starts a flush when
the batch is full.
"""

from __future__ import annotations

from collections.abc import Callable

from extrusion.scoring.book import SenderBook
from extrusion.scoring.events import (
    ClientEvidence,
    Connection,
    FlowEvidence,
    Headers,
    Refused,
    State,
    Submission,
)
from extrusion.scoring.forwarding import foreign_envelope
from extrusion.scoring.heuristics import is_auto_reply, list_identity
from extrusion.scoring.kinds import Kind
from extrusion.scoring.logjudge import judge_evidence
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.rows import QUEUED, MessageRow, RecipientRow, make_row
from extrusion.scoring.shown import authenticated, envelope_domain
from extrusion.scoring.submitfast import envelope_facts, shown_and_learnt
from extrusion.scoring.tracker import MessageInfo

NO_HEADERS = Headers()  # what a message from the log carries: no headers to judge by
MAX_FLOW_SOURCES = 16  # a customer's addresses kept in that finding (the border export)


class Recorder:
    """Turns connections, submissions and the log's and flows' evidence into findings."""

    def __init__(self, book: SenderBook, after_record: Callable[[], None]) -> None:
        self.book = book
        self.after_record = after_record

    def connection(self, event: Connection) -> None:
        book = self.book
        key = book.map.key(event.client_addr, event.sasl_user)
        with book.lock:
            mem = book.mem(key, event.time, event.client_addr)
            book.judge.helos(mem, event.helos, event.client_addr, event.time,
                             client_name=event.client_name, envelope_from=event.envelope_from,
                             recipients=event.recipients, confirmed=event.helo_confirmed)
            book.judge.inbound(mem, event.client_addr, Headers(), event.time)
            book.changed(mem, event.time)
        self.after_record()

    def submission(self, event: Submission) -> None:
        book = self.book
        mta = event.mta or book.mta
        with book.lock:
            if book.messages.has((mta, event.queue_id)):
                return  # recorded already (milter and log feed may both report it)
            now = event.time
            mem = book.mem(event.sender, now, event.client_addr)
            info = self._track(mem, event, mta)
            judge = book.judge
            if event.helos:  # a logged message seldom has one: no call for nothing
                judge.helos(mem, event.helos, event.client_addr, now,
                            client_name=event.client_name, envelope_from=event.envelope_from,
                            recipients=event.recipients, confirmed=event.helo_confirmed)
            if event.client_evidence:
                judge.inbound(mem, event.client_addr, event.headers, now,
                              envelope_from=event.envelope_from, client_name=event.client_name)
            # The common message in one pass (submitfast.py); any other the general way.
            if not shown_and_learnt(judge, book.sasl, mem, event, now):
                book.shown(mem, event.envelope_from, event.recipients, event.client_addr, now)
                if not info.null_sender:
                    _learn(mem, event, now)
            if book.keeps_rows:
                _queue_rows(book, event, info)
            book.changed(mem, now)
        self.after_record()

    def _track(self, mem: SenderMemory, event: Submission, mta: str) -> MessageInfo:
        """The message remembered until its recipients' outcomes are in."""
        book = self.book
        n = len(event.recipients)
        headers = event.headers
        null, _robot, domain, envelope_from = envelope_facts(event.envelope_from)
        # An auto-reply from the sender's own domain (one it sent from before): a
        # return path a bot forges at a new domain every time is no excuse.
        auto = (n == 1 and not null and is_auto_reply(event.envelope_from, headers, n)
                and (headers != NO_HEADERS or domain in mem.baseline.domains))
        candidate = book.judge.list_candidate(n) and not null
        # The sender's key and a repeated envelope sender as one shared string each, not
        # a copy per tracked message (each event arrives with strings of its own). Made
        # positionally, in the fields' order (once per message; a third cheaper than by
        # keyword): mta, queue_id, sender, time, envelope_from, rcpt_count, null_sender,
        # auto_reply, list_id (only a possible list post needs to say which list it
        # belongs to), list_like.
        info = MessageInfo(
            mta, event.queue_id, mem.key, event.time, envelope_from, n,
            null, auto, list_identity(envelope_from, headers) if candidate else "",
            None if candidate else False,
        )
        for old in book.messages.add(info):
            book.settle_forgotten(old, event.time)
        return info

    def refused(self, event: Refused) -> None:
        """A recipient the MTA refused because this sender was rate limited, read from the
        log (replay): evidence as when `decide()` refuses it live, if the sender is
        throttled here too."""
        book = self.book
        with book.lock:
            mem = book.senders.get(event.sender)
            if (mem is None or mem.state is not State.THROTTLED
                    or not book.judge.refused_while_throttled(mem, event.recipient,
                                                              event.time)):
                return
            book.changed(mem, event.time)
        book.dispatch()

    def evidence(self, event: ClientEvidence) -> None:
        """What the log shows about a client besides outcomes (scoring/logjudge.py)."""
        book = self.book
        with book.lock:
            mem = book.mem(event.sender, event.time, event.client_addr)
            judge_evidence(book.judge, mem, event, event.time)
            book.changed(mem, event.time)
        self.after_record()

    def direct_sending(self, event: FlowEvidence) -> None:
        """Flow records show the address sending straight to the Internet's MX hosts: the
        finding lands on the sender its smarthost mail has, weighing `direct_to_mx`."""
        book = self.book
        key = book.map.key(event.client_addr, "")
        weight = book.config.weights.direct_to_mx
        if event.escalated:  # its mail at our MX was refused or spam (MX mode)
            weight *= book.config.flows_mx_escalation
        mx = {"mx_delivered": event.mx_delivered, "mx_refused": event.mx_refused} \
            if event.mx_delivered >= 0 else {}
        with book.lock:
            mem = book.mem(key, event.time, event.client_addr)
            mem.add(weight, event.time, book.half_life)
            old = mem.findings.get(Kind.DIRECT_TO_MX, {})
            sources = [a for a in old.get("sources", []) if a != event.client_addr]
            mem.note(Kind.DIRECT_TO_MX, event.time, weight,
                     example=", ".join(event.examples[:3]),
                     sources=[*sources, event.client_addr][-MAX_FLOW_SOURCES:],
                     destinations=event.destinations, networks=event.networks,
                     hours_active=event.hours_active, blocks_active=event.blocks_active,
                     packets=event.packets, hourly=[list(h) for h in event.hourly], **mx)
            book.changed(mem, event.time)
        self.after_record()


def _learn(mem: SenderMemory, event: Submission, now: float) -> None:
    """The sender's baseline: what its own mail usually looks like."""
    mem.baseline.learn(now, event.helos[-1] if event.helos else "",
                       envelope_domain(event.envelope_from), authenticated(mem.key),
                       len(event.recipients))
    if event.headers.forwarded_from or foreign_envelope(event.envelope_from,
                                                        event.client_name):
        mem.baseline.learn_foreign()


def _queue_rows(book: SenderBook, event: Submission, info: MessageInfo) -> None:
    """The message's row and one per recipient, for the next flush."""
    now, mta = event.time, info.mta
    book.batch.message_rows.append(make_row(MessageRow, (
        now, mta, event.queue_id, event.sender, event.envelope_from,
        event.helos[-1] if event.helos else "", event.client_addr, event.client_name,
        event.size, info.rcpt_count, event.message_id, info.null_sender, info.auto_reply,
        info.list_like is None, info.list_id,
    )))
    # The store counts the message ("messages", "recipients" counters) when it
    # writes the row: only there can a second report of it, from the other
    # process, be told apart.
    book.batch.recipient_rows.extend(
        make_row(RecipientRow, (now, mta, event.queue_id, event.sender, r, QUEUED,
                                "", "", "", ""))
        for r in event.recipients
    )
