"""The pymilter callbacks: SMTP session in, engine events and decisions out, replies back.

One `ExtrusionMilter` per SMTP connection (libmilter runs each connection on
its own thread; callbacks of one connection never overlap). Everything shared
between connections is in `Runtime` and is thread-safe. No callback raises:
a failure of the engine is answered as `on_error` says, and hostile input is
cleaned in `session`.

Macros are requested through milter negotiation (`@Milter.symlist`). Postfix
honours that request; for completeness, and for MTAs that ignore it, the
Postfix lines that send the same macros are:

    milter_connect_macros = j {daemon_name} {daemon_addr} v _ {client_addr} {client_name}
    milter_mail_macros = i {auth_type} {auth_authen} {auth_author}
        {mail_addr} {mail_host} {mail_mailer}
    milter_end_of_data_macros = i

conf/postfix/main.cf.snippet ships them. `i` is the queue id: Postfix knows
it only from end of data on (unless smtpd_delay_open_until_valid_rcpt = no).
Sendmail needs `s`, the HELO name, in confMILTER_MACROS_ENVFROM only to back
up a HELO that pymilter could not decode.
"""

from __future__ import annotations

import logging
import socket
import uuid
from typing import Any

import Milter

from extrusion.keys import normal_address as normal_address
from extrusion.milter import constants as c
from extrusion.milter import replies
from extrusion.milter.backlog import Event
from extrusion.milter.guard import EngineFailure
from extrusion.milter.macros import MacroMilter, decoded
from extrusion.milter.replies import Reply

# Re-exported: the daemon, `extrusion serve` and the tests build the milter from here.
from extrusion.milter.runtime import Runtime as Runtime
from extrusion.milter.runtime import Settings as Settings
from extrusion.milter.runtime import fallback_sender_key as fallback_sender_key
from extrusion.milter.session import Message, Session, bare_address
from extrusion.milter.text import clean, reply_text
from extrusion.scoring.events import Action, Decision, Stage

log = logging.getLogger("extrusion.milter")

# pymilter's reply codes, typed.
CONTINUE: int = Milter.CONTINUE
TEMPFAIL: int = Milter.TEMPFAIL
REJECT: int = Milter.REJECT
NOREPLY: int = Milter.NOREPLY
P_NR_HDR: int = Milter.P_NR_HDR
P_NR_BODY: int = Milter.P_NR_BODY


class ExtrusionMilter(MacroMilter):
    """Callbacks for one SMTP connection."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.session = Session()

    # --- connection ------------------------------------------------------------------------

    @Milter.noreply  # type: ignore[untyped-decorator]
    @Milter.symlist(c.MACRO_CLIENT_ADDR)  # type: ignore[untyped-decorator]
    def connect(self, hostname: str | bytes, family: int, hostaddr: Any) -> int:
        try:
            if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
                addr = hostaddr[0] if isinstance(hostaddr, tuple) else str(hostaddr)
            else:  # a local submission or an unknown family: ask the MTA
                addr = self._macro(c.MACRO_CLIENT_ADDR) or ""
            self.session.connected(hostname, addr)
            self.session.client_addr = normal_address(self.session.client_addr)
        except Exception:
            log.exception("connect callback failed")
        return CONTINUE

    @Milter.noreply  # type: ignore[untyped-decorator]
    def hello(self, heloname: str | bytes) -> int:
        try:
            s = self.session
            known = len(s.distinct_helos())
            s.add_helo(heloname)
            # A new HELO after the session's first MAIL (the SASL login, the sender key,
            # is known by then): judged now, not only if a message is accepted. One
            # before it waits for that MAIL, or the session's end, to land on the right
            # sender.
            if (s.connection_recorded and len(s.distinct_helos()) > known
                    and s.first_judgement()):
                self.rt.guard.record(s.connection(self.rt.clock(), self.rt.settings.mta))
        except Exception:
            log.exception("hello callback failed")
        return CONTINUE

    # --- envelope --------------------------------------------------------------------------

    @Milter.symlist(c.MACRO_AUTH_AUTHEN, c.MACRO_QUEUE_ID, c.MACRO_HELO)  # type: ignore[untyped-decorator]
    def envfrom(self, mailfrom: str, *params: str) -> int:
        try:
            return self._envfrom(mailfrom)
        except Exception:
            log.exception("envfrom callback failed")
            return self._on_error()

    def _envfrom(self, mailfrom: str) -> int:
        s = self.session
        s.end_message()
        if sasl := clean(self._macro(c.MACRO_AUTH_AUTHEN), c.MAX_NAME_CHARS):
            s.sasl_user = sasl
        if helo := self._macro(c.MACRO_HELO):
            # Sendmail's copy of the last HELO: new only if pymilter could not
            # decode that HELO (its C layer fails before hello() is called).
            s.add_helo_copy(helo)
        envelope_from = bare_address(mailfrom)
        queue_id = clean(self._macro(c.MACRO_QUEUE_ID), c.MAX_NAME_CHARS)
        now = self.rt.clock()
        guard = self.rt.guard
        engine = guard.engine
        if self.rt.helo_resolver is not None:
            s.add_confirmed(self.rt.helo_resolver.confirmed(s.helos, s.client_addr,
                                                            envelope_from))
        # The session's first MAIL carries its Connection event (HELOs and SASL
        # login are known by now) on the same trip to the engine as the decision; so
        # does a later MAIL that brings a new HELO or MAIL FROM domain to judge them by
        # (HELO = MAIL FROM counts even if every RCPT is refused).
        events: tuple[Event, ...] = ()
        if s.first_judgement(envelope_from) or not s.connection_recorded:
            events = (s.connection(now, self.rt.settings.mta, envelope_from),)
        s.connection_recorded = True
        helo_kw: dict[str, Any] = {}
        if self.rt.settings.reject_bad_helo:
            helo_kw = {"helos": tuple(s.helos), "client_addr": s.client_addr,
                       "envelope_from": envelope_from, "client_name": s.client_name}

        def ask() -> tuple[str, Decision]:
            key = engine.sender_key(client_addr=s.client_addr, sasl_user=s.sasl_user)
            return key, engine.decide(key, Stage.MAIL, 0, now,
                                      count=self.rt.settings.rate_limits, **helo_kw)

        try:
            sender, decision = guard.call("decide at MAIL", ask, events)
        except EngineFailure:
            s.start_message(fallback_sender_key(s.client_addr, s.sasl_user), envelope_from,
                            queue_id)
            return self._on_error()
        msg = s.start_message(sender, envelope_from, queue_id)
        return self._refuse_or_continue(decision, msg, Stage.MAIL)

    def envfrom_bytes(self, mailfrom: bytes, *params: bytes) -> int:
        """pymilter's entry for MAIL: the address decoded as pymilter decodes it.

        pymilter's own version also decodes every ESMTP parameter, which
        `envfrom` does not read.
        """
        rc: int = self.envfrom(decoded(mailfrom))
        return rc

    def envrcpt_bytes(self, rcpt: bytes, *params: bytes) -> int:
        """pymilter's entry for RCPT, like `envfrom_bytes`."""
        return self.envrcpt(decoded(rcpt))

    def envrcpt(self, rcpt: str, *params: str) -> int:
        try:
            return self._envrcpt(rcpt)
        except Exception:
            log.exception("envrcpt callback failed")
            return self._on_error()

    def _envrcpt(self, rcpt: str) -> int:
        msg = self.session.message
        if msg is None:  # RCPT without MAIL never reaches a milter; be safe anyway
            return CONTINUE
        engine, now = self.rt.guard.engine, self.rt.clock()
        address = bare_address(rcpt)
        msg.add_tried(address)
        try:
            decision = self.rt.guard.call("decide at RCPT", lambda: engine.decide(
                msg.sender, Stage.RCPT, 1, now, count=self.rt.settings.rate_limits,
                recipient=address))
        except EngineFailure:
            rc = self._on_error()
        else:
            rc = self._refuse_or_continue(decision, msg, Stage.RCPT, keep_message=True)
        if rc == CONTINUE:
            msg.add_address(address)
        return rc

    def data(self) -> int:
        """Answer DATA at once, although there is nothing to judge here.

        Without a DATA callback Postfix still sends the DATA-stage macro packet
        and gets no reply; the next packet on the connection then waits for the
        delayed ACK (Nagle), about 40 ms per SMTP session over TCP. One loopback
        round trip is far cheaper.
        """
        return CONTINUE

    # --- content: only a few header facts and the size are kept ----------------------------

    @Milter.noreply  # type: ignore[untyped-decorator]
    def header(self, name: str, value: str) -> int:
        self._header(name, value)
        return CONTINUE

    def header_bytes(self, name: str, value: bytes | str) -> int:
        """pymilter's entry for each header: its C layer hands over the value as bytes.

        Decodes as pymilter's own version does and answers as `@Milter.noreply`
        would, without that version's per-call attribute lookups and wrapper
        (there are several headers in every message).
        """
        self._header(name, decoded(value))
        return NOREPLY if self._protocol & P_NR_HDR else CONTINUE

    def _header(self, name: str, value: str) -> None:
        try:
            if (msg := self.session.message) is not None:
                msg.add_header(name, value)
        except Exception:
            log.exception("header callback failed")

    @Milter.noreply  # type: ignore[untyped-decorator]
    def body(self, chunk: bytes) -> int:
        if self.session.message is not None:
            self.session.message.add_body(len(chunk))
        return CONTINUE

    @Milter.symlist(c.MACRO_QUEUE_ID)  # type: ignore[untyped-decorator]
    def eom(self) -> int:
        try:
            return self._eom()
        except Exception:
            log.exception("eom callback failed")
            return self._on_error()
        finally:
            self.session.end_message()

    def _eom(self) -> int:
        s, msg = self.session, self.session.message
        if msg is None:
            return CONTINUE
        if queue_id := clean(self._macro(c.MACRO_QUEUE_ID), c.MAX_NAME_CHARS):
            msg.queue_id = queue_id
        if not msg.queue_id:
            # Without it no delivery outcome can be tied to this sender; a made-up
            # id still counts the message (the engine keeps one per queue id).
            msg.queue_id = f"{c.NO_QUEUE_ID}-{uuid.uuid4().hex[:12].upper()}"
            if self.rt.first_time("no queue id"):
                log.warning("the MTA sends no queue id (macro i) at end of message: "
                            "add it to milter_end_of_data_macros; messages get made-up ids")
        engine, now = self.rt.guard.engine, self.rt.clock()
        try:
            decision = self.rt.guard.call("decide at end of message", lambda: engine.decide(
                msg.sender, Stage.EOM, len(msg.recipients), now,
                count=self.rt.settings.rate_limits))
        except EngineFailure:
            rc = self._on_error()
            if rc == CONTINUE:
                self.rt.guard.record(s.submission(msg, now, self.rt.settings.mta))
            return rc
        if decision.action is Action.HOLD:
            if not self._quarantine(decision, msg):
                return self._refuse(replies.ERROR_REPLY, TEMPFAIL)
        elif not decision.is_continue:
            return self._refuse_or_continue(decision, msg, Stage.EOM)
        self._mark(decision, msg)
        s.first_judgement(msg.envelope_from, tuple(msg.recipients))  # judged with it
        self.rt.guard.record(s.submission(msg, now, self.rt.settings.mta))
        return CONTINUE

    def abort(self) -> int:
        # The transaction ended without a message (RSET, a lost client, every RCPT
        # refused): forget the message, not what the HELOs say against its envelope.
        try:
            self._judge_unsent()
        except Exception:
            log.exception("abort callback failed")
        self.session.end_message()
        return CONTINUE

    def _judge_unsent(self) -> None:
        """The HELOs judged against a transaction that never became a message."""
        s, msg = self.session, self.session.message
        if msg is None or not s.connection_recorded:
            return
        # MAIL judged the HELOs against MAIL FROM already; what is new here are the
        # recipients, and only those whose domain a HELO could name (as judge_helos).
        helos = [h.lower().rstrip(".") for h in s.helos]
        named = tuple(r for r in msg.tried
                      if (tail := ".".join(r.rpartition("@")[2].lower().rsplit(".", 2)[-2:]))
                      and any(h.endswith(tail) for h in helos))
        if named and s.first_judgement(msg.envelope_from, named):
            self.rt.guard.record(s.connection(self.rt.clock(), self.rt.settings.mta,
                                              msg.envelope_from, named))

    def close(self) -> int:
        try:
            s = self.session
            self._judge_unsent()
            s.end_message()
            if not s.connection_recorded and s.client_addr:
                # A session that never got as far as MAIL still shows its HELOs.
                s.connection_recorded = True
                self.rt.guard.record(s.connection(self.rt.clock(), self.rt.settings.mta))
        except Exception:
            log.exception("close callback failed")
        return CONTINUE

    # --- helpers ----------------------------------------------------------------------------

    def _refuse_or_continue(
        self, decision: Decision, msg: Message, stage: Stage, *, keep_message: bool = False
    ) -> int:
        reply = replies.for_decision(decision)
        if reply is None:
            return CONTINUE
        _log_decision(decision, msg, stage)
        if not keep_message:
            self.session.end_message()
        return self._refuse(reply, TEMPFAIL if reply.code[0] == "4" else REJECT)

    def _refuse(self, reply: Reply, rc: int) -> int:
        self.setreply(reply.code, reply.enhanced, reply.text)
        return rc

    def _on_error(self) -> int:
        if self.rt.settings.on_error == "tempfail":
            return self._refuse(replies.ERROR_REPLY, TEMPFAIL)
        return CONTINUE

    def _quarantine(self, decision: Decision, msg: Message) -> bool:
        reason = reply_text(decision.reason or "held by extrusion", c.MAX_REPLY_TEXT)
        try:
            self.quarantine(reason)
        except Exception as exc:
            log.error("cannot hold sender=%s queue_id=%s (%s): refusing with a tempfail",
                      msg.sender, msg.queue_id or "-", exc)
            return False
        _log_decision(decision, msg, Stage.EOM)
        return True

    def _mark(self, decision: Decision, msg: Message) -> None:
        """The optional X-Extrusion header; a client's own copies of it are removed."""
        if not self.rt.settings.add_header:
            return
        try:
            for idx in range(msg.forged_marks, 0, -1):
                self.chgheader(c.HEADER_EXTRUSION, idx, "")
            self.addheader(c.HEADER_EXTRUSION,
                           f"score={decision.score:.1f} state={decision.state.value}")
        except Exception as exc:
            log.warning("cannot add %s header: %s", c.HEADER_EXTRUSION, exc)


def _log_decision(decision: Decision, msg: Message, stage: Stage) -> None:
    log.info("decision sender=%s queue_id=%s stage=%s action=%s state=%s reason=%s",
             msg.sender, msg.queue_id or "-", stage.value, decision.action.value,
             decision.state.value, clean(decision.reason, 500) or "-")
