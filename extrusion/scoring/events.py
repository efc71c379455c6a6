"""The vocabulary shared by every part of extrusion: events in, decisions out.

The milter, the policy daemon, the log feed and `replay` all speak to the
engine with these immutable records; none of them knows how the engine
judges. Times are POSIX seconds (float) supplied by the caller, so replaying
an old log uses the log's own clock.

`Submission`, `Outcome`, `Refused` and `ClientEvidence` are made for nearly
every line of a log (twice in a two-process `replay`: by the reader, and
again from its tuples by the engine), so they are slotted but not frozen: a
frozen dataclass sets each field through `object.__setattr__`, which made
building one about three times dearer. They are still hashable and compared
by value, and nothing assigns to their fields: `dataclasses.replace` makes a
changed copy, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    """Where a sender stands; ordered from harmless to refused."""

    OK = "ok"
    WATCH = "watch"
    THROTTLED = "throttled"
    HELD = "held"
    BLOCKED = "blocked"

    @property
    def rank(self) -> int:
        return _STATE_RANK[self]


_STATE_RANK = {s: i for i, s in enumerate(State)}


class Stage(StrEnum):
    """The point of the SMTP conversation a decision is asked for."""

    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    EOM = "eom"


class Action(StrEnum):
    """What the enforcement point should do."""

    CONTINUE = "continue"
    TEMPFAIL = "tempfail"
    HOLD = "hold"
    REJECT = "reject"


class Status(StrEnum):
    """A recipient's delivery status as the MTA reports it."""

    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    REJECTED = "rejected"  # refused before queueing (NOQUEUE reject, milter reject)


class OperatorVerb(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    HOLD = "hold"
    RELEASE = "release"
    MONITOR = "monitor"


@dataclass(frozen=True, slots=True)
class Headers:
    """Only the headers the heuristics read; bodies are never kept."""

    auto_submitted: str = ""
    precedence: str = ""
    list_id: str = ""
    list_unsubscribe: str = ""
    x_spam_flag: str = ""
    x_spam_status: str = ""
    x_spam: str = ""  # rspamd
    x_spamd_result: str = ""  # rspamd
    x_rspamd_action: str = ""
    received_count: int = 0
    # Where forwarded mail came from, as the milter read it from the Received chain
    # (scoring/forwarding.py); "" when not forwarded or not known.
    forwarded_from: str = ""


@dataclass(frozen=True, slots=True)
class Connection:
    """An SMTP session as seen at connect and HELO time."""

    time: float
    client_addr: str
    client_name: str = ""
    helos: tuple[str, ...] = ()
    sasl_user: str = ""
    mta: str = ""
    # Known by the time the session's HELOs are judged (a MAIL whose recipients were
    # all refused, or the session's end): what HELO = MAIL FROM / RCPT TO is judged by.
    envelope_from: str = ""
    recipients: tuple[str, ...] = ()
    # HELO names the milter found to resolve to the client's address.
    helo_confirmed: tuple[str, ...] = ()


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the module docstring
class Submission:
    """A message accepted (or about to be) from a sender.

    `sender` is the sender key (`sasl:USER`, `ip:ADDR` or `customer:NAME`);
    `envelope_from` is the bare address, "" for the null sender `<>`.
    """

    time: float
    sender: str
    queue_id: str
    envelope_from: str
    recipients: tuple[str, ...]
    size: int = 0
    mta: str = ""
    client_addr: str = ""
    client_name: str = ""
    helos: tuple[str, ...] = ()
    headers: Headers = field(default_factory=Headers)
    message_id: str = ""
    helo_confirmed: tuple[str, ...] = ()  # as in Connection
    # Whether the client address is evidence here (mx mode: an own customer range
    # arriving from outside). The log feed's report of a message the milter reports
    # too says False, so that the two processes do not both count it.
    client_evidence: bool = True


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the module docstring
class Outcome:
    """What happened to one recipient of one message.

    `sender` may be empty when only the queue id is known (live log feed);
    the engine then finds the sender from the submission it recorded.
    """

    time: float
    queue_id: str
    recipient: str
    status: Status
    dsn: str = ""
    reply: str = ""
    sender: str = ""
    envelope_from: str | None = None
    mta: str = ""
    relay: str = ""
    # The client's verified reverse name when the MTA refused the message in the SMTP
    # session (a filter's milter-reject): judges an SRS envelope (scoring/forwarding.py).
    client_name: str = ""


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the module docstring
class Refused:
    """A recipient the MTA refused because extrusion rate-limited its sender, as the log
    shows it (`replay`: live, `decide()` counts the refusal as it answers)."""

    time: float
    sender: str
    recipient: str


class Seen(StrEnum):
    """What a `ClientEvidence` from the log is (maillog/evidence.py)."""

    SESSION = "session"  # a refused session: the client, its HELOs, its envelope
    POSTSCREEN = "postscreen"  # postscreen's verdict on the client (PREGREET, DNSBL…)
    SPAM_VERDICT = "spam_verdict"  # a spam filter's own log line said spam


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the module docstring
class ClientEvidence:
    """What an MTA's log shows about a client besides its messages' outcomes: the HELOs
    of a refused session, a postscreen verdict, a spam filter's verdict on one message.

    `envelope_from` and `client_addr` travel with a spam verdict so that the scoring side
    can discount forwarded mail as it does the milter's headers; `client_evidence` as in
    `Submission` (False: a milter reports these connections too, and with them the first
    sighting of an own customer range; what it never sees still counts)."""

    time: float
    sender: str
    client_addr: str
    kind: Seen
    client_name: str = ""  # verified rDNS name, "unknown" or "" (postscreen logs none)
    helos: tuple[str, ...] = ()
    envelope_from: str = ""
    recipients: tuple[str, ...] = ()
    detail: str = ""
    queue_id: str = ""
    mta: str = ""
    client_evidence: bool = True


@dataclass(frozen=True, slots=True)
class FlowEvidence:
    """A customer address seen (in sampled flow records) sending port-25 traffic straight
    to many hosts on the Internet, bypassing the smarthost (extrusion.flows).

    Counts are over the analysis window; `packets` is scaled by the sampling rate;
    `hourly` is (hour start, estimated packets) per active hour, oldest first."""

    time: float
    client_addr: str
    destinations: int
    networks: int
    hours_active: int
    blocks_active: int
    packets: int
    examples: tuple[str, ...] = ()
    hourly: tuple[tuple[int, int], ...] = ()
    # MX mode (extrusion.flows.mxnotes): recipients of the sender's mail at our MX
    # delivered and refused or spam (-1: not known), and whether that escalated it.
    mx_delivered: int = -1
    mx_refused: int = -1
    escalated: bool = False


@dataclass(frozen=True, slots=True)
class OperatorAction:
    time: float
    sender: str
    verb: OperatorVerb
    who: str
    why: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer to `decide()`.

    `text` is what the client sees (never internal details); `reason` is what
    the operator greps the log for.
    """

    action: Action
    state: State
    score: float
    smtp_code: int = 250
    enhanced_code: str = "2.0.0"
    text: str = ""
    reason: str = ""

    @property
    def is_continue(self) -> bool:
        return self.action is Action.CONTINUE


@dataclass(frozen=True, slots=True)
class StateChange:
    """One entry of the audit trail, also handed to listeners (hold queue, notifications)."""

    time: float
    sender: str
    old: State
    new: State
    score: float
    reason: str
    who: str = "engine"
    evidence: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notice:
    """A finding about a sender that changes no state: a rejection daemon is
    `misconfigured` (reported, never throttled)."""

    time: float
    sender: str
    kind: str
    score: float
    reason: str
    evidence: dict[str, object] = field(default_factory=dict)
