"""One notification per event for all the hosts sharing a store.

Every host sees a bot's state change (its own or, a moment later, the
store's), and each would send the abuse desk its own digest. Before a digest
goes out, the host claims each (sender, state) in the store's
`notify_claims` table: one upsert per change, which wins only when no other
host claimed the same sender and state within `[notify] claim_seconds` (the
same host may claim again: a second rise of its own is news). Changes another
host claimed are left out of this host's digest. While the store cannot be
asked, everything is sent: a duplicate alert beats a missing one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from extrusion.scoring.events import StateChange
from extrusion.scoring.store import Store

log = logging.getLogger("extrusion.notify")

# Filters a digest's changes down to those this host is to send.
Claim = Callable[[Sequence[StateChange]], list[StateChange]]


def store_claim(store: Callable[[], Store | None], mta: str, seconds: float) -> Claim:
    def claim(changes: Sequence[StateChange]) -> list[StateChange]:
        current = store()
        if current is None or seconds <= 0:
            return list(changes)
        try:
            won = current.claim_notifications(
                [(c.sender, c.new.value, c.time) for c in changes], mta, seconds)
        except Exception as exc:  # the store may be down: rather twice than never
            log.warning("notifications: cannot claim them in the store (%s); sending all", exc)
            return list(changes)
        return [c for c in changes if (c.sender, c.new.value) in won]

    return claim
