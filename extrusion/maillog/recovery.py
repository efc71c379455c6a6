"""Crash-safe log following: a `kill -9` loses no evidence and counts none twice.

Evidence that only memory holds is lost with the process: a message half
joined (its client line read, its envelope or outcomes not yet), and an
outcome whose sender is not known yet (the engine waits up to 300 s for its
submission). The design chosen is the simplest that survives any crash:

- **The log is the journal.** The checkpoint never passes the first line of
  a message still open in the joiner, nor that of the message of an outcome
  the engine still holds unresolved (its sender not known yet, so this
  pending outcome is persisted in the log itself, with the lines that may
  still name its sender): it stays at the oldest such line (`offset`), and
  also says how far lines were read (`reached`). Nothing but the checkpoint
  is written, and the log file already holds what memory held. The re-read is
  bounded: a message first seen more than `[maillog] queue_id_ttl_seconds`
  (log time) ago, or in a file rotated away, no longer holds the checkpoint.
- **Re-read lines are de-duplicated against the store.** After a restart the
  lines from `offset` on are read again and joined as before. Everything
  they recorded before the crash is in the store (the engine flushes before
  each checkpoint), so each event from log time up to the last line read
  before (`boundary`) is looked up first: a submission whose (mta, queue id)
  is stored, an outcome whose (mta, queue id, recipient, status, log time) is
  stored, is skipped — neither its row nor its counters nor its score again.
  Events after the boundary are new and go straight through. A message met
  in the re-read lines without its beginning was finished before the crash
  (else it would have held the checkpoint): its sender-less outcomes were
  recorded or dropped then, and the joiner does not emit them again.

Persisting the joiner's state instead would mean a second serialised form of
every open message, written at every checkpoint; re-reading needs none.
A store that cannot be asked during recovery records the event anyway (a
double is better than a loss) and the lookups that failed are counted.
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from extrusion import identity
from extrusion.config import Config
from extrusion.maillog.feed import LogFeed
from extrusion.maillog.feedsink import FeedEngine
from extrusion.maillog.follow import FileFollower
from extrusion.scoring.events import ClientEvidence, Outcome, Refused, Submission

log = logging.getLogger(__name__)

# Messages whose stored outcomes are remembered while re-reading, at most.
LOOKUPS_KEPT = 10_000
# Sender-less outcomes whose lines may hold the checkpoint, at most (the engine keeps
# at most scoring.outcomes.MAX_UNRESOLVED itself).
SENDERLESS_KEPT = 100_000
# Stored outcome times are kept to the millisecond (scoring/packing.py).
OUTCOME_TIME_SLACK = 0.0015


class RecoveryStore(Protocol):
    def message(self, queue_id: str, mta: str = "") -> Any: ...

    def outcomes_recorded(self, mta: str, queue_id: str) -> set[tuple[str, str, float]]: ...


@dataclass
class RecoveryStats:
    submissions_skipped: int = 0
    outcomes_skipped: int = 0
    lookups_failed: int = 0
    evidence_skipped: int = 0  # ClientEvidence read again: the store keeps no row of it


def checkpoint_name(config: Config, path: str | None = None) -> str:
    """The checkpoint's key: this host's identity and the file's path (default
    `[maillog] path`), so that hosts sharing a store and a path never share one."""
    return f"{identity.mta_name(config)}:{os.path.abspath(path or config.maillog.path)}"


class Recovery:
    """Stands between the log feed and the engine (`FeedEngine`): skips what a re-read
    recorded already, and remembers where each sender-less outcome was read."""

    def __init__(self, engine: FeedEngine, store: RecoveryStore, mta: str,
                 mark: Callable[[], tuple[int, int]] = lambda: (0, 0)) -> None:
        """`mark()`: (file, offset) of the first line of the message of the outcome
        being recorded."""
        self.engine = engine
        self.store = store
        self.mta = mta
        self.stats = RecoveryStats()
        #: Log time of the last line read before the restart: events up to it may be
        #: stored already. Infinite until the first line not read before arrives.
        self.boundary = math.inf
        self.mark = mark
        self._outcomes: OrderedDict[tuple[str, str], set[tuple[str, str, float]]] = OrderedDict()
        self._senderless: deque[tuple[tuple[int, int], Outcome]] = deque(maxlen=SENDERLESS_KEPT)

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        return self.engine.sender_key(client_addr=client_addr, sasl_user=sasl_user)

    def submission(self, event: Submission) -> None:
        if event.time <= self.boundary and self._stored_message(event):
            self.stats.submissions_skipped += 1
            return
        self.engine.submission(event)

    def outcome(self, event: Outcome) -> None:
        if event.time <= self.boundary and self._stored_outcome(event):
            self.stats.outcomes_skipped += 1
            return
        if not event.sender:
            self._senderless.append((self.mark(), event))
        self.engine.outcome(event)

    def refused(self, event: Refused) -> None:
        self.engine.refused(event)

    def evidence(self, event: ClientEvidence) -> None:
        # Nothing in the store says whether it was counted before the restart: a few
        # seconds of evidence (up to the checkpoint) may go uncounted, none twice.
        if event.time <= self.boundary:
            self.stats.evidence_skipped += 1
            return
        self.engine.evidence(event)

    def held_from(self, file: int, unresolved: Callable[[], list[Outcome]], horizon: float
                  ) -> int | None:
        """Offset in `file` of the oldest sender-less outcome the engine still holds."""
        queue = self._senderless
        if not queue:
            return None
        pending = {id(e) for e in unresolved()}
        while queue:
            (f, offset), event = queue[0]
            if f == file and id(event) in pending and event.time >= horizon:
                return offset
            queue.popleft()
        return None

    def _stored_message(self, event: Submission) -> bool:
        try:
            return self.store.message(event.queue_id, event.mta or self.mta) is not None
        except Exception as exc:
            self._lookup_failed(exc)
            return False

    def _stored_outcome(self, event: Outcome) -> bool:
        if not event.queue_id:
            return False  # refused before queueing: no key to tell a repeat by
        key = (event.mta or self.mta, event.queue_id)
        known = self._outcomes.get(key)
        if known is None:
            try:
                known = self.store.outcomes_recorded(*key)
            except Exception as exc:
                self._lookup_failed(exc)
                return False
            self._outcomes[key] = known
            if len(self._outcomes) > LOOKUPS_KEPT:
                self._outcomes.popitem(last=False)
        # The store keeps each recipient's last outcome, its time to the millisecond: an
        # outcome no later than it was read (and recorded) before it.
        return any(rcpt == event.recipient and event.time <= t + OUTCOME_TIME_SLACK
                   for rcpt, _status, t in known)

    def _lookup_failed(self, exc: Exception) -> None:
        self.stats.lookups_failed += 1
        n = self.stats.lookups_failed
        if n in (1, 10, 100) or not n % 1000:
            log.warning("re-reading the log after a restart: the store could not say whether "
                        "an event was recorded before (%s; %d so far); recorded again", exc, n)


class CrashSafeFeed:
    """The live file feed: a `FileFollower`, a `LogFeed` and a `Recovery` wired together.

    `poll()` from one thread at a time (the policy daemon's worker)."""

    def __init__(self, engine: Any, config: Config, store: Any, path: str | None = None,
                 deliver: Callable[[LogFeed, str], None] | None = None,
                 start_at: Literal["end", "beginning"] | None = None) -> None:
        """`path`: the log to follow (default `[maillog] path`); `deliver(feed, line)`
        hands a line to the feed (default `feed.line`: a journal of syslog datagrams
        decodes its own lines); `start_at` overrides `[maillog] start_at`."""
        path = path or config.maillog.path
        self._deliver = deliver or LogFeed.line
        self.engine = engine
        self.config = config
        self.ttl = config.maillog.queue_id_ttl_seconds
        self.recovery = Recovery(engine, store, identity.mta_name(config),
                                 mark=lambda: self.feed.joiner.outcome_mark)
        self.feed = LogFeed.from_config(self.recovery, config, live=True)
        self.name = name = checkpoint_name(config, path)
        _adopt_legacy_checkpoint(store, name, path)
        self.follower = FileFollower(
            path, self._line, checkpoints=store, name=name,
            start_at=start_at or config.maillog.start_at,
            commit=engine.flush,
            too_long=self.feed.too_long, hold=self._held_from,
        )

    def poll(self) -> int:
        return self.follower.poll()

    def close(self) -> None:
        """Finish the open joins and save the checkpoint (the unfinished line waits)."""
        self.feed.finish()
        self.follower.close()

    def _line(self, text: str) -> None:
        f = self.follower
        joiner = self.feed.joiner
        joiner.mark = f.line_at
        if self.recovery.boundary == math.inf:
            if f.rereading:
                joiner.reread_until = math.inf
            else:  # the first line not read before the restart
                joiner.reread_until = self.recovery.boundary = self.feed.now
        self._deliver(self.feed, text)

    def _held_from(self, file: int) -> int | None:
        unresolved = getattr(self.engine, "unresolved_outcomes", None)
        held = [self.feed.joiner.held_from(file)]
        if unresolved is not None:
            held.append(self.recovery.held_from(file, unresolved, self.feed.now - self.ttl))
        return min((h for h in held if h is not None), default=None)


def _adopt_legacy_checkpoint(store: Any, name: str, path: str) -> None:
    """A checkpoint saved under the path alone (before checkpoints named their host) is
    taken over once, if it names the very file found at that path."""
    if store.get_checkpoint(name) is not None:
        return
    old = store.get_checkpoint(os.path.abspath(path))
    if old is None:
        return
    try:
        st = os.stat(path)
    except OSError:
        return
    if old.inode == st.st_ino and old.offset <= st.st_size:
        store.set_checkpoint(name, old._replace(device=st.st_dev))
