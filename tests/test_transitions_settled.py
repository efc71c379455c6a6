"""`transitions.settled()`, asked after every event, answers as its definition does.

Its common case (no evidence, no pin) is answered from the sender's attributes
without calling `score_bound()` and `pin_of()`; every combination of state,
probation, score parts, watch threshold and pins must give what those two say.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from extrusion.config.judging import Override
from extrusion.scoring.events import State
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.pins import pin_of
from extrusion.scoring.providers import provider_family
from extrusion.scoring.state import PIN_STATES
from extrusion.scoring.transitions import settled

SCORES = st.one_of(st.sampled_from([0.0, -0.0, -1.0, 0.5, 3.0, math.nan]),
                   st.floats(allow_nan=False, width=32))
ACTIONS = ["allow", "block", "hold", "monitor", "limits"]


def definition(mem: SenderMemory, watch: float) -> bool:
    return (mem.state is State.OK and mem.probation is None and mem.score_bound() < watch
            and pin_of(mem) not in PIN_STATES)


@given(state=st.sampled_from(list(State)), probation=st.booleans(), base=SCORES,
       pending=SCORES, watch=st.sampled_from([0.0, -1.0, 0.5, 5.0, math.nan]),
       pin=st.sampled_from([None, "", *ACTIONS]),
       config=st.sampled_from([None, *ACTIONS]))
def test_settled_is_its_definition(state: State, probation: bool, base: float,
                                   pending: float, watch: float, pin: str | None,
                                   config: str | None) -> None:
    mem = SenderMemory("ip:192.0.2.1", 0.0, 3600.0)
    mem.state, mem.base, mem.pending, mem.pin = state, base, pending, pin
    mem.probation = object() if probation else None
    mem.config_pin = None if config is None else Override(match="ip:192.0.2.1",
                                                          action=config)  # type: ignore[arg-type]
    assert settled(mem, watch) is definition(mem, watch)


def test_a_sender_without_evidence_or_pin_is_settled() -> None:
    mem = SenderMemory("ip:192.0.2.1", 0.0, 3600.0)
    assert settled(mem, 1.0)
    mem.pending = 1.0
    assert not settled(mem, 1.0)
    mem.pending, mem.pin = 0.0, "block"
    assert not settled(mem, 1.0)
    mem.pin, mem.config_pin = None, Override(match="ip:192.0.2.1", action="hold")
    assert not settled(mem, 1.0)
    mem.config_pin = Override(match="ip:192.0.2.1", action="limits")
    assert settled(mem, 1.0)


def test_provider_family_is_the_same_asked_again() -> None:
    # Cached by its argument: a second asking, and another spelling, give the same.
    for _ in range(2):
        assert provider_family("hotmail.co.uk") == "microsoft"
        assert provider_family("Hotmail.CO.UK.") == "microsoft"
        assert provider_family("yahoo.com.tw") == "yahoo"
        assert provider_family("example.org") is None
        assert provider_family("localhost") is None
