"""`bounds.bound_json`'s shortcut (a dict whose JSON text shows that nothing in it needs
bounding is returned as it is) against the general walk it skips, over varied values."""

from __future__ import annotations

import random
from typing import Any

import pytest

from extrusion.scoring import bounds, schema

LIMIT = schema.JSON_TEXT_LEN
# Strings that sit on either side of every rule of bound_text.
ODD = ["", "a", "x" * LIMIT, "x" * (LIMIT + 1), "é" * (LIMIT // 4), "é" * (LIMIT + 1),
       "a\x00b", "\udc80", "😀", 'say "hi"', "back\\slash", "\\ud800", "\\u0000",
       '"' * (LIMIT + 1), "\\" * (LIMIT - 3), ('a"' * LIMIT), "\ud7ff" * 10]


def _string(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(ODD)
    n = rng.choice([1, 10, 200, LIMIT - 1, LIMIT, LIMIT + 1, 3 * LIMIT])
    return "".join(rng.choice('ab "\\\x00é\udc80😀') if rng.random() < 0.01 else "a"
                   for _ in range(n))


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth > 3 or pick < 0.3:
        return rng.choice([_string(rng), 7, 2.5, None, True, float("nan"), 10**30])
    if pick < 0.5:
        items = [_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
        return tuple(items) if rng.random() < 0.2 else items
    keys = [_string(rng) if rng.random() < 0.8 else rng.randrange(9)
            for _ in range(rng.randrange(0, 6))]
    return {k: _value(rng, depth + 1) for k in keys}


def findings(rng: random.Random) -> dict[Any, Any]:
    """Mostly findings-shaped dicts: named entries with counts, times and examples."""
    if rng.random() < 0.3:
        value = _value(rng)
        return value if isinstance(value, dict) else {"v": value}
    return {_string(rng)[:40] or "f": {"count": rng.randrange(9), "last": rng.random(),
                                       "examples": [_string(rng) for _ in range(5)]}
            for _ in range(rng.randrange(1, 4))}


@pytest.mark.parametrize("seed", range(20))
def test_the_shortcut_answers_as_the_general_walk(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        value = findings(rng)
        general = bounds._bound_json(value)
        fast = bounds.bound_json(value)
        assert (fast is value) == (general is value)
        assert repr(fast) == repr(general)  # repr: NaN equals itself there


def test_the_shortcut_is_taken_for_ordinary_findings() -> None:
    value = {"helo": {"count": 3, "last": 1.5, "examples": ["mx.example.org"] * 5},
             "note": "x" * LIMIT, "long": ["y" * LIMIT for _ in range(4)]}
    assert bounds.json_fits(value)
    assert bounds.bound_json(value) is value


@pytest.mark.parametrize("odd", ["x" * (LIMIT + 1), "a\x00", "\udc80", "é" * (LIMIT + 1)])
def test_a_value_the_shortcut_cannot_vouch_for_goes_the_general_way(odd: str) -> None:
    for value in ({"k": odd}, {odd: 1}, {"k": [1, {"e": odd}]}, {"k": ("a", odd)}):
        assert not bounds.json_fits(value)
        assert bounds.bound_json(value) is not value
