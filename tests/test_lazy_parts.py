"""A sender's lazy parts: each evidence window and the baseline made on its first read,
with its own span, and no `__getattr__` anywhere in SenderMemory's classes (one there
would stop CPython specialising every attribute read of a sender)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from extrusion.scoring.baseline import Baseline
from extrusion.scoring.memory import WINDOWS, SenderMemory, WindowSet

T0 = 1_700_000_000.0


def test_no_getattr_hook_in_the_classes() -> None:
    assert all("__getattr__" not in vars(cls) for cls in SenderMemory.__mro__)
    assert not hasattr(SenderMemory("sasl:a", T0, 60.0), "__dict__")


@pytest.mark.parametrize("name", WINDOWS)
def test_a_window_is_made_on_its_first_read_with_its_span(name: str) -> None:
    mem = SenderMemory("sasl:a", T0, 60.0)
    mem.spans = MappingProxyType({"helos": 7.0, "shown": 7.0})
    assert mem.made(name) is None
    window = getattr(mem, name)
    assert isinstance(window, WindowSet) and window.empty
    assert window.window == (7.0 if name in ("helos", "shown") else 60.0)
    assert mem.made(name) is window and getattr(mem, name) is window
    # The others are still not made.
    assert [w for w in WINDOWS if mem.made(w) is not None] == [name]
    assert mem.made("baseline") is None


def test_forget_locally_empties_the_made_windows_only() -> None:
    mem = SenderMemory("sasl:a", T0, 60.0)
    mem.failed.add("r@x", T0)
    mem.forget_locally(T0 + 1, {})
    assert mem.failed.empty
    assert [w for w in WINDOWS if mem.made(w) is not None] == ["failed"]


def test_the_baseline_is_made_on_first_read_or_set() -> None:
    mem = SenderMemory("sasl:a", T0, 60.0)
    assert mem.made("baseline") is None
    made = mem.baseline
    assert isinstance(made, Baseline) and mem.baseline is made and mem.made("baseline") is made
    kept = Baseline()
    mem.baseline = kept
    assert mem.baseline is kept and mem.made("baseline") is kept
