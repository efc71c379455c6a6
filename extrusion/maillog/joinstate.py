"""What the joiner keeps: its settings and counters, one open message per queue id,
and the names a log's host fields are stored under.

`extrusion.maillog.join` reads records into these; `extrusion.maillog.emit` turns
an `OpenMessage` into the engine's events.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from extrusion.maillog.evidence import EvidenceStats
from extrusion.scoring.events import ClientEvidence, Outcome, Refused, Submission

log = logging.getLogger(__name__)

MAX_HOST_NAMES = 64  # host fields remembered as this host's or another's
FOREIGN_SAID = 5  # other hosts' names warned about, at most


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

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled to the replay's reader. Compiled (mypyc), a frozen dataclass cannot
        # be restored field by field: it is made again from its fields instead.
        return (JoinSettings, tuple(getattr(self, f.name) for f in fields(self)))


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


class OpenMessage:
    """One queue id's state, from its first line until it is removed or ages out."""

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
        # Made at the first deferral: an empty set is 216 bytes, and few messages need one.
        self.deferred: set[str] | None = None

    @property
    def known(self) -> bool:
        return bool(self.client_addr or self.sasl_user)

    @property
    def key(self) -> str:
        return self.host + " " + self.qid


def inherit(child: OpenMessage, name: str, addr: str, sasl_user: str, null_sender: bool) -> None:
    """The next queue's copy belongs to whoever sent the first."""
    child.client_name, child.client_addr, child.sasl_user = name, addr, sasl_user
    child.inherited = True
    child.whole = True
    child.null_sender = child.null_sender or null_sender


def held_from(opened: OrderedDict[str, OpenMessage], msgs: dict[str, OpenMessage], file: int,
              horizon: float) -> int | None:
    """The offset in `file` of the first line of the oldest message still open, or None.

    `opened` holds the messages in the order they were first seen; whatever is no longer
    open, or was first seen before `horizon` or in another file, is dropped from it as it
    is met: it holds nothing back any more (re-reading after a crash stays bounded, and a
    message deferred for days does not pin the checkpoint)."""
    while opened:
        key = next(iter(opened))
        m = opened[key]
        if m.first >= horizon and m.mark[0] == file and msgs.get(key) is m:
            return m.mark[1]
        del opened[key]
    return None


class LocalNames:
    """Host fields mapped to the name their messages are stored under: this machine's
    spellings to `local_mta`, any other to itself (bounded, each looked at once)."""

    def __init__(self, settings: JoinSettings) -> None:
        self.settings = settings
        self.known = dict.fromkeys(settings.local_hosts, settings.local_mta)
        self._foreign_said = 0
        if settings.mta or not settings.local_mta:
            self.known.clear()  # nothing to rename: the joiner skips the lookup

    def new(self, host: str) -> str:
        """A host field not seen before: this host's under another spelling, or another's."""
        local = self.known.get(host.lower())
        if len(self.known) < MAX_HOST_NAMES:
            self.known[host] = local or host
        s = self.settings
        if local is None and s.live and self._foreign_said < FOREIGN_SAID:
            self._foreign_said += 1
            log.warning("log lines of host %r are not this host's (%s): their messages are "
                        "stored under %r; if this log holds only this host's MTA, set "
                        "[general] hostname, or the milter's and the log's reports of one "
                        "message are counted apart", host[:80], s.local_mta, host[:80])
        return local or host
