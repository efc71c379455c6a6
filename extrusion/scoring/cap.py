"""The cap on senders in memory: which ones to forget when there are too many.

In MX mode every Internet sender is a sender: without a cap the engine's
memory grows with each new address for as long as its rate windows last (a
day). Over `[scoring] max_senders` the least recently active senders that
the store already holds in full are forgotten: state `ok`, no pin, no
probation, nothing waiting for the next flush. A forgotten sender seen again
starts afresh in memory, and the next flush's answer from the store brings
back its score, state, pin and findings (`adopt.adopt`). What lives
only in memory goes with it: its evidence windows (distinct recipients
failed in the last hour), its rate-limit counters and its baseline.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping

from extrusion.scoring.events import State
from extrusion.scoring.memory import SenderMemory

log = logging.getLogger("extrusion.scoring")

# Each pass frees this share of the cap at once, so that a stream of new senders
# walks the whole table once per 5 % of the cap, not once per sender.
SLACK_SHARE = 0.05


class SenderCap:
    """Counts what it forgot; `victims()` picks the keys to drop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # 0: no cap
        self.evicted = 0  # senders forgotten to keep under the cap, ever
        self.over = 0  # passes that could not get under it: the kept ones alone exceed it
        self._next_try = 0  # don't walk the table again before it holds this many
        self._warned = False

    @property
    def slack(self) -> int:
        return max(1, int(self.limit * SLACK_SHARE))

    def due(self, size: int) -> bool:
        return self.limit > 0 and size > self.limit and size >= self._next_try

    def retry_soon(self) -> None:
        """After a flush the senders it wrote may go: try at the next occasion."""
        self._next_try = 0

    def victims(self, senders: Mapping[str, SenderMemory], dirty: set[str],
                pinned: Callable[[SenderMemory], bool]) -> list[str]:
        """The least recently active forgettable senders, to bring `senders` a slack
        below the cap; fewer (and a warning, once) when the rest must be kept."""
        size = len(senders)
        want = size - max(self.limit - self.slack, 0)
        if self.limit <= 0 or want <= 0:
            return []
        candidates = (m for k, m in senders.items()
                      if k not in dirty and _forgettable(m) and not pinned(m))
        chosen = [m.key for m in heapq.nsmallest(want, candidates, key=_last_seen)]
        self.evicted += len(chosen)
        if size - len(chosen) > self.limit:
            self.over += 1
            self._next_try = size + self.slack
            if not self._warned:
                # Once per process: a burst of new senders between two flushes does it
                # every flush; the metric counts every time.
                self._warned = True
                log.warning("%d senders in memory, above [scoring] max_senders = %d: only "
                            "%d could be forgotten, the rest are watched, throttled, held, "
                            "blocked, pinned, on probation or not yet written to the store "
                            "(logged once; extrusion_engine_senders_over_cap counts)",
                            size, self.limit, len(chosen))
        else:
            self._next_try = 0
        return chosen


def _forgettable(mem: SenderMemory) -> bool:
    return (mem.state is State.OK and mem.probation is None and not mem.dirty
            and not mem.state_dirty and not mem.findings_dirty and mem.pin_dirty is None
            and not mem.reset and mem.pin is None and mem.config_pin is None)


def _last_seen(mem: SenderMemory) -> float:
    return mem.last_seen
