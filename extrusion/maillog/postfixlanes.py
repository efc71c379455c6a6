"""Postfix's commonest lines read straight into the joiner: no record, no tuple of them.

Nearly every line of a Postfix log is one of a few kinds: qmgr's `from=<…>` and
`removed`, cleanup's `message-id=`, smtpd's `client=NAME[ADDR]` (with or without a
SASL login) and a delivery agent's `to=<…>` (most of the rest are `connect from`,
`disconnect from` and TLS notes, of no interest). `LaneJoiner` reads these itself,
only the fields it keeps, and joins them as `Joiner.add()` joins the record
`postfix.parse()` would have built: one call per line instead of a parser, a record
and `add()`.

A lane answers True (joined), False (of no interest: `parse()` gives `()`) or None:
not sure, read the line with `parse()` as before — every other kind, NOQUEUE
lines, and any line of these kinds a lane does not read whole. So what is
accepted, and how it is read, stays `parse()`'s. A lane only slices, compares and
matches strings before it joins: nothing a line holds makes it raise.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from extrusion.maillog import postfix
from extrusion.maillog.join import STATUS, EventSink, Joiner, JoinSettings, KeyFunction
from extrusion.maillog.records import Delivery

# (time, host, message, its queue id or "") -> joined / of no interest / None: ask the
# parser.
Lane = Callable[[float, str, str, str], "bool | None"]

NOQUEUE = postfix.NOQUEUE
MESSAGE_ID = postfix.MESSAGE_ID
QMGR_SERVICES = frozenset({"qmgr", "nqmgr", "oqmgr"})
# Services whose lines `parse()` reads in a way of its own besides `to=<…>`: no
# delivery agent's lane for them.
_OWN_WAYS = QMGR_SERVICES | {"smtpd", "postscreen", "cleanup", "bounce", "postsuper", "pickup"}
_client_expr = postfix.CLIENT.fullmatch
_fields = postfix.fields
_qmgr_from = postfix.QMGR_FROM.match
_delivery_fields = postfix.delivery_fields
_message_id = postfix.message_id
_disconnect = postfix.disconnect
_disconnect_expr = postfix.DISCONNECT.fullmatch
# What `parse()` takes for a queue id: 5 to 20 ASCII letters and digits before the first
# ": " (none of them can be a ":" or a space, so the ": " after them is the first).
QUEUE_ID_CHARS = r"[0-9A-Za-z]{5,20}"
QUEUE_ID = QUEUE_ID_CHARS + r"(?=: )"
_queue_id = re.compile(QUEUE_ID).match


def queue_id(message: str) -> str:
    """The queue id a Postfix message starts with, as `parse()` reads it, or ""."""
    m = _queue_id(message)
    return "" if m is None else m.group()


class LaneJoiner(Joiner):
    """A `Joiner` that reads the commonest Postfix lines itself (its lanes)."""

    def __init__(self, sink: EventSink, key: KeyFunction, settings: JoinSettings | None = None):
        super().__init__(sink, key, settings)
        # The delivery lane's way to an outcome; `_delivery()` keeps `route()`, the general
        # way the lane is checked against.
        self._attempt = self.out.attempt

    def lane(self, service: str) -> Lane | None:
        """The lane for a Postfix service's lines (the tag's last component), if any."""
        if service in QMGR_SERVICES:
            return self.qmgr_line
        if service == "cleanup":
            return self.cleanup_line
        if service == "smtpd":
            return self.smtpd_line
        if service in postfix.SERVICES and service not in _OWN_WAYS:
            return self.agent_line
        return None

    # Each lane is given the queue id `parse()` would find (`queue_id()`: the caller reads
    # it with the line's other fields), then, once the line is known to be joined, does
    # what `add()` does first (the clock, the host's name).

    def qmgr_line(self, t: float, host: str, message: str, qid: str) -> bool | None:
        if not qid:
            return False
        colon = len(qid)
        if qid == NOQUEUE:
            return None
        if len(message) == colon + 9 and message.endswith("removed"):
            if t > self.now:
                self.advance(t)
            if self._local:
                host = self._local.get(host) or self.names.new(host)
            self._removed(host, qid)
            return True
        if message.startswith("from=<", colon + 2):
            m = _qmgr_from(message, colon + 2)
            if m is None:
                return None  # expired, or garbled
            if t > self.now:
                self.advance(t)
            if self._local:
                host = self._local.get(host) or self.names.new(host)
            key = host + " " + qid
            found = self._msgs.get(key)
            if found is None:  # its first line: `_get()` opens it
                self._queued(t, host, qid, m.group(1), int(m.group(2)), int(m.group(3)))
                return True
            found.last = t  # `_get()`'s, then `_queued()`'s, of a message it finds
            self._msgs.move_to_end(key)
            if found.envelope_from is None or not found.nrcpt:
                found.envelope_from, found.size, found.nrcpt = (
                    m.group(1), int(m.group(2)), int(m.group(3)))
                if self._early:
                    self.evidence.envelope_known(host, qid)
            return True
        return None if message.startswith("to=<", colon + 2) else False

    def cleanup_line(self, t: float, host: str, message: str, qid: str) -> bool | None:
        if not qid:
            return False
        colon = len(qid)
        if qid == NOQUEUE or not message.startswith(MESSAGE_ID, colon + 2):
            return None
        if t > self.now:
            self.advance(t)
        if self._local:
            host = self._local.get(host) or self.names.new(host)
        mid = _message_id(message[colon + 2 :])
        # `_message_id()`, inline, for a message `_get()` finds.
        key = host + " " + qid
        m = self._msgs.get(key)
        if m is None:
            self._message_id(t, host, qid, mid)
            return True
        m.last = t
        self._msgs.move_to_end(key)
        m.message_id = mid
        if mid:
            self.evidence.remember_message_id(host, mid, qid)
        return True

    def smtpd_line(self, t: float, host: str, message: str, qid: str) -> bool | None:
        if not qid:
            # `connect from …` and the like; `disconnect from …` may count failed commands.
            if not message.startswith("disconnect from "):
                return False
            # `disconnect()`'s answer for a session whose every command succeeded (no "/"
            # in its counts: nearly all), without the call; any other, by `disconnect()`.
            d = _disconnect_expr(message)
            if d is not None and "/" not in (d.group(2) or ""):
                return False
            records = _disconnect(message)
            if not records:
                return None if records is None else False
            for record in records:
                self.add(t, host, record)
            return True
        colon = len(qid)
        if qid == NOQUEUE or not message.startswith("client=", colon + 2):
            return None
        if ", " in message:  # not in `QID: `: in what follows it
            return self._client_fields(t, host, qid, message[colon + 2 :])
        c = _client_expr(message, colon + 2 + len("client="))
        if c is None:
            return None
        name, addr = c.groups()
        self._client_seen(t, host, qid, name, addr, "")
        return True

    def _client_fields(self, t: float, host: str, qid: str, rest: str) -> bool | None:
        """`client=NAME[ADDR], sasl_method=…, sasl_username=…` (a login on the submission
        port: a sixth of a smarthost's messages) read by the parser's field dictionary;
        XFORWARD's `orig_client=` is left to the parser."""
        fields = _fields(rest)
        if "orig_client" in fields:
            return None
        c = _client_expr(fields.get("client", ""))
        if c is None:
            return None
        self._client_seen(t, host, qid, c.group(1), c.group(2),
                          fields.get("sasl_username", ""))
        return True

    def _client_seen(self, t: float, host: str, qid: str, name: str, addr: str,
                     sasl_user: str) -> None:
        """`add()` of a `ClientSeen` without original client (`_client()`'s common case)."""
        if t > self.now:
            self.advance(t)
        if self._local:
            host = self._local.get(host) or self.names.new(host)
        m = self._get(host, qid, t)
        m.whole = True
        if not (m.inherited and self._is_relay_addr(addr)):
            m.client_name, m.client_addr = name, addr
        if sasl_user:
            m.sasl_user = sasl_user

    def agent_line(self, t: float, host: str, message: str, qid: str) -> bool | None:
        """A delivery agent's (smtp, lmtp, local, virtual, pipe…) line: a fifth of a log's
        lines. Its fields go to the open message's outcome without a `Delivery`, `_get()`
        or hand-off check; what is not common (a new queue id, a deferral, a bounce's
        recipient, a hand-off's `queued as`) goes the record's way."""
        if not qid:
            return False
        colon = len(qid)
        if qid == NOQUEUE:
            return None
        if not message.startswith("to=<", colon + 2):
            return False
        f = _delivery_fields(message, colon + 2)
        if f is None:
            return None
        if t > self.now:
            self.advance(t)
        if self._local:
            host = self._local.get(host) or self.names.new(host)
        rcpt, orig_to, relay, dsn, status, reply = f
        key = host + " " + qid
        m = self._msgs.get(key)
        if (m is None or m.deferred or m.null_sender or status == "deferred"
                or (status == "sent" and "queued as " in reply)):
            self._delivery(t, host, Delivery(qid, rcpt, status, dsn, relay, reply,
                                             orig_to or ""))
            return True
        m.last = t  # `_get()`'s, of a message it finds
        self._msgs.move_to_end(key)
        self._attempt(m, t, rcpt, STATUS[status], dsn, reply, relay, self._mta or host,
                      self.now)
        return True
