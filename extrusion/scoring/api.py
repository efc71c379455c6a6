"""The engine's interface as the milter, the policy daemon and the log feed see it.

`extrusion.scoring.engine.Engine` implements it. Adapters type against this
Protocol so the judgement stays in one place and the adapters stay thin.

Threading: every method may be called from several threads (libmilter runs
one thread per SMTP connection); the engine serialises internally.
Failure: `decide()` never touches the store and never raises for a store
outage; the recording methods queue writes and spool them locally when the
store is unreachable. Adapters still guard every call (fail open).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from extrusion.scoring.attention import Attention
from extrusion.scoring.events import (
    ClientEvidence,
    Connection,
    Decision,
    FlowEvidence,
    OperatorAction,
    Outcome,
    Refused,
    Stage,
    StateChange,
    Submission,
)


class EngineAPI(Protocol):
    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        """`sasl:USER` or `ip:ADDR`, or `customer:NAME` when config maps it."""

    def connection(self, event: Connection) -> None:
        """Record a session's client and HELOs (HELO evidence is judged here)."""

    def submission(self, event: Submission) -> None:
        """Record a message and its recipients (queue id -> sender for later outcomes)."""

    def outcome(self, event: Outcome) -> None:
        """Record one recipient's delivery outcome; may change the sender's state."""

    def refused(self, event: Refused) -> None:
        """A recipient refused as rate limited, read from the log: evidence against a
        throttled sender (replay; live, `decide()` counts it as it answers)."""

    def evidence(self, event: ClientEvidence) -> None:
        """What the log shows about a client besides outcomes (a refused session's HELOs,
        a postscreen verdict, a spam filter's verdict): judged as the same evidence from
        the milter or the policy server is."""

    def direct_sending(self, event: FlowEvidence) -> None:
        """Flow records show a customer address sending port 25 straight to the Internet
        (`[weights] direct_to_mx`, finding `direct_to_mx` on its sender key)."""

    def operator(self, event: OperatorAction) -> StateChange | None:
        """Apply an operator's allow/block/hold/release/monitor; audited.

        The sender is canonicalised (`SenderMap.operator_key`); a key that is
        malformed or that traffic never has raises `SenderKeyError`, and
        nothing is recorded."""

    def helo_note(self, helos: tuple[str, ...], client_addr: str, client_name: str = "",
                  envelope_from: str = "") -> str:
        """The kinds of HELO anomaly in a session, comma-separated ("" for none): the policy
        server writes them into the MTA's log, so a replay of the log has the HELO too."""

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
        """Answer from memory. With `count`, a CONTINUE at RCPT consumes
        `recipient_count` from the sender's recipient budget and one at EOM
        consumes one message; `helos`/`client_addr`/`envelope_from` let the
        engine refuse on HELO evidence at MAIL when config says so. With
        `count`, a throttled sender's `recipient` refused at RCPT is evidence
        (`[weights] throttled_refusal`)."""

    def undelivered_queue_ids(self, sender: str, mta: str = "") -> list[str]:
        """Queue ids of the sender's messages not yet finally delivered or bounced."""

    def add_listener(self, listener: Callable[[StateChange], None]) -> None:
        """Called after every state change (hold queue actions, notifications)."""

    def attention(self) -> Attention:
        """Senders under watch, in a worse state or on probation, and the addresses they
        last came from: on Postfix the milter is attached to these clients' sessions."""

    def refresh(self, now: float | None = None) -> None:
        """Pull state written by other processes/MTAs sharing the store."""

    def flush(self) -> None:
        """Write queued events to the store (or the spool if it is down)."""

    def close(self) -> None:
        """Flush and release the store."""


class EngineUnavailable(Exception):
    """The engine is not open (yet): its store could not be reached at start-up."""


class EngineSlot:
    """An `EngineAPI` that forwards every call to the engine another component owns.

    `extrusion serve` opens one engine in the policy daemon's engine service,
    which may open it late (it retries while the store is down); the milter,
    on the same host and in the same process, judges through this slot, so
    both see one sender's evidence, score and state. A call made before the
    engine is open raises `EngineUnavailable`, which the milter's guard treats
    like any engine failure (mail continues as `on_error` says; events wait in
    its backlog).
    """

    def __init__(self, get: Callable[[], EngineAPI | None]) -> None:
        self._get = get

    def _engine(self) -> EngineAPI:
        engine = self._get()
        if engine is None:
            raise EngineUnavailable("the engine is not open yet (store unreachable at start-up)")
        return engine

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        return self._engine().sender_key(client_addr=client_addr, sasl_user=sasl_user)

    def connection(self, event: Connection) -> None:
        self._engine().connection(event)

    def submission(self, event: Submission) -> None:
        self._engine().submission(event)

    def outcome(self, event: Outcome) -> None:
        self._engine().outcome(event)

    def refused(self, event: Refused) -> None:
        self._engine().refused(event)

    def evidence(self, event: ClientEvidence) -> None:
        self._engine().evidence(event)

    def direct_sending(self, event: FlowEvidence) -> None:
        self._engine().direct_sending(event)

    def operator(self, event: OperatorAction) -> StateChange | None:
        return self._engine().operator(event)

    def helo_note(self, helos: tuple[str, ...], client_addr: str, client_name: str = "",
                  envelope_from: str = "") -> str:
        return self._engine().helo_note(helos, client_addr, client_name, envelope_from)

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
        return self._engine().decide(sender, stage, recipient_count, now, count=count,
                                     helos=helos, client_addr=client_addr,
                                     envelope_from=envelope_from, recipient=recipient,
                                     client_name=client_name)

    def undelivered_queue_ids(self, sender: str, mta: str = "") -> list[str]:
        return self._engine().undelivered_queue_ids(sender, mta)

    def add_listener(self, listener: Callable[[StateChange], None]) -> None:
        self._engine().add_listener(listener)

    def attention(self) -> Attention:
        return self._engine().attention()

    def refresh(self, now: float | None = None) -> None:
        self._engine().refresh(now)

    def flush(self) -> None:
        self._engine().flush()

    def close(self) -> None:
        """The owner closes the engine; the slot only lets go of it."""
