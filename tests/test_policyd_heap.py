"""The daemon's interpreter: its start-up heap frozen once it is ready (out of the
collector's walks), and its threads switching within a millisecond."""

from __future__ import annotations

import gc
import sys

import pytest

from extrusion.policyd.daemon import SWITCH_INTERVAL, settle_heap, share_interpreter


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


def test_share_interpreter_shortens_the_switch_interval() -> None:
    before = sys.getswitchinterval()
    try:
        share_interpreter()
        # Within a millisecond, not CPython's 5 ms: a flush thread holding the GIL
        # must not keep the reactor's requests waiting longer than that.
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        assert SWITCH_INTERVAL <= 0.001
    finally:
        sys.setswitchinterval(before)
