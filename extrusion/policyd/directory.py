"""Read-only views of the store for the operator API and the senders gauge.

Everything here blocks on the database and is called from worker threads.
The engine owns the store; these functions borrow it (`engine.store_of`).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from extrusion.scoring.engine import Engine, store_of
from extrusion.scoring.events import State
from extrusion.scoring.senderjson import sender_detail_json, sender_json
from extrusion.scoring.store import Store


class StoreDirectory:
    """`SenderDirectory` (see api.py) over the engine's store."""

    def __init__(self, store: Store, half_life: float) -> None:
        self.store = store
        self.half_life = half_life

    def list_senders(self, state: State | None, limit: int) -> list[dict[str, Any]]:
        now = time.time()
        rows = self.store.senders(state.value if state is not None else None)
        return [sender_json(r, self.half_life, now, findings=False) for r in rows[:limit]]

    def sender_detail(self, key: str) -> dict[str, Any] | None:
        row = self.store.sender(key)
        if row is None:
            return None
        # The findings are the engine's reasons with their evidence (counts, examples).
        return sender_detail_json(row, self.store.state_changes(key), self.half_life,
                                  time.time())


def store_directory(engine: object) -> StoreDirectory | None:
    if not isinstance(engine, Engine):
        return None  # a slot or a stand-in: no store of its own to list
    return StoreDirectory(engine.store, engine.config.scoring.half_life_seconds)


def sender_counts(engine: object) -> dict[str, int]:
    """Senders by state, for the `extrusion_senders` gauge."""
    store = store_of(engine)
    if store is None:
        return {}
    return dict(Counter(r.state for r in store.senders()))
