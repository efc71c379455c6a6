"""Recent messages in memory: queue id -> sender and the facts outcomes are judged by.

An outcome arrives long after its submission and often in another process;
the tracker answers the common case (same process) without a database round
trip. It also holds the failures of a possible mailing-list post until the
post's failure share is known: a list post's failures are discounted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from extrusion.scoring.rows import StoredMessage

MAX_MESSAGES = 200_000
# Postfix gives up on a message after 5 days (maximal_queue_lifetime).
MESSAGE_MEMORY_SECONDS = 5 * 86400.0
# A message's final recipients once all of them are: one shared, empty, never changed.
CLOSED: set[str] = set()


@dataclass(slots=True)
class MessageInfo:
    mta: str
    queue_id: str
    sender: str
    time: float
    envelope_from: str = ""
    rcpt_count: int = 0
    null_sender: bool = False
    auto_reply: bool = False
    list_id: str = ""
    # None: a possible list post whose share of failures is not known yet.
    list_like: bool | None = False
    # The distinct recipients with a final outcome, read only by `open`: made on the
    # second one, and let go once there are as many as recipients (`CLOSED`), so a
    # delivered message (nearly all of the 200,000 tracked) holds no set at all.
    _final: set[str] | None = None
    # Read only while the list verdict is pending (judge.settle_list), so made on first
    # use: up to 200,000 messages are tracked, and three empty containers each were
    # half of a replay's memory.
    _attempted: set[str] | None = None
    _failed: set[str] | None = None
    # Failures waiting for the list verdict: (recipient, outcome class, time).
    _held: list[tuple[str, str, float]] | None = None

    def finished(self, rcpt: str) -> None:
        """`rcpt` had its final outcome."""
        final = self._final
        if final is CLOSED:
            return
        if final is None:
            if self.rcpt_count <= 1:
                self._final = CLOSED  # one recipient, and it is done
                return
            final = self._final = set()
        final.add(rcpt)
        if len(final) >= self.rcpt_count:
            self._final = CLOSED

    @property
    def held(self) -> list[tuple[str, str, float]]:
        if self._held is None:
            self._held = []
        return self._held

    @held.setter
    def held(self, held: list[tuple[str, str, float]]) -> None:
        self._held = held or None

    @property
    def attempted(self) -> set[str]:
        if self._attempted is None:
            self._attempted = set()
        return self._attempted

    @property
    def failed(self) -> set[str]:
        if self._failed is None:
            self._failed = set()
        return self._failed

    @classmethod
    def from_record(cls, m: StoredMessage, list_candidate: bool) -> MessageInfo:
        return cls(
            mta=m.mta, queue_id=m.queue_id, sender=m.sender, time=m.time,
            envelope_from=m.envelope_from, rcpt_count=m.rcpt_count, null_sender=m.null_sender,
            auto_reply=m.auto_reply, list_id=m.list_id,
            list_like=None if list_candidate else False,
        )

    @property
    def open(self) -> bool:
        return self._final is not CLOSED and len(self._final or ()) < self.rcpt_count


class MessageTracker:
    def __init__(self, max_messages: int = MAX_MESSAGES) -> None:
        self.max = max_messages
        self._by_queue: OrderedDict[tuple[str, str], MessageInfo] = OrderedDict()
        # The possible list posts among them, in the same order: housekeeping looks for
        # undecided ones every flush, and walking all 200,000 messages for them cost more
        # than the rest of the flush's bookkeeping. Decided ones are dropped lazily.
        self._undecided: dict[tuple[str, str], MessageInfo] = {}
        # `(mta, queue_id) in tracker` asked of every submission, as the dict's own
        # method: no Python frame for it.
        self.has = self._by_queue.__contains__

    def __len__(self) -> int:
        return len(self._by_queue)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._by_queue

    def get(self, mta: str, queue_id: str) -> MessageInfo | None:
        return self._by_queue.get((mta, queue_id))

    def add(self, info: MessageInfo) -> list[MessageInfo]:
        """Remember `info`; returns the oldest messages pushed out to make room."""
        key = (info.mta, info.queue_id)
        replaced = key in self._by_queue
        self._by_queue[key] = info
        if info.list_like is None:
            if replaced and key not in self._undecided:
                # The key keeps its old place in _by_queue: rebuild to keep the same order.
                self._undecided = {k: m for k, m in self._by_queue.items()
                                   if k in self._undecided or k == key}
            self._undecided[key] = info
        else:
            self._undecided.pop(key, None)
        evicted = []
        while len(self._by_queue) > self.max:
            old_key, old = self._by_queue.popitem(last=False)
            self._undecided.pop(old_key, None)
            evicted.append(old)
        return evicted

    def undecided_before(self, horizon: float) -> list[MessageInfo]:
        """Possible list posts submitted before `horizon` still waiting for a verdict."""
        decided = [k for k, m in self._undecided.items() if m.list_like is not None]
        for k in decided:
            del self._undecided[k]
        return [m for m in self._undecided.values() if m.time < horizon]

    def expire(self, horizon: float) -> list[MessageInfo]:
        """Forget messages submitted before `horizon`; returns them."""
        gone = []
        while self._by_queue:
            key, info = next(iter(self._by_queue.items()))
            if info.time >= horizon:
                break
            gone.append(info)
            del self._by_queue[key]
            self._undecided.pop(key, None)
        return gone

    def open_queue_ids(self, sender: str, mta: str) -> list[str]:
        return [
            m.queue_id for m in self._by_queue.values()
            if m.sender == sender and m.mta == mta and m.open
        ]
