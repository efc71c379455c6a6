"""The daemon's start-up heap, frozen once it is ready: out of the collector's walks."""

from __future__ import annotations

import gc

from extrusion.policyd.daemon import settle_heap


def test_settle_heap_freezes_what_start_up_made() -> None:
    kept = [{"sender": i} for i in range(1000)]  # long-lived, tracked by the collector
    gc.unfreeze()
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(kept)
        # Frozen objects are out of every generation a collection walks.
        assert all(not any(o is d for o in gc.get_objects()) for d in kept[:3])
    finally:
        gc.unfreeze()
