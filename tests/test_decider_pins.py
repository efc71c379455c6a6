"""`decide()` reads a sender's pin only when it has one of either kind (decider.py):
for every pin an operator or the config can set, the answer is the one `pin_of()`
says is in force."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from extrusion.config.judging import Override
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Stage, State
from extrusion.scoring.pins import pin_of
from extrusion.scoring.store import Store

from . import helpers
from .helpers import Clock

SENDER = "ip:198.51.100.40"
PINS = [None, "", "allow", "block", "hold", "monitor"]
CONFIG_PINS = [None, "allow", "block", "hold", "monitor", "limits"]


@pytest.mark.parametrize("state", [State.OK, State.HELD, State.BLOCKED])
def test_the_pin_in_force_decides_whatever_kind_it_is(tmp_path: Path, state: State) -> None:
    cfg = helpers.config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    store = Store(cfg.store.url)
    clock = Clock()
    engine = Engine(cfg, store, clock)
    try:
        for pin, action in itertools.product(PINS, CONFIG_PINS):
            engine.decide(SENDER, Stage.RCPT, count=True, client_addr="198.51.100.40",
                          recipient="r@remote.example")
            mem = engine._senders[SENDER]
            mem.pin, mem.state = pin, state
            mem.config_pin = None if action is None else Override(SENDER, action)
            d = engine.decide(SENDER, Stage.MAIL, count=False)
            in_force = pin_of(mem)
            assert (d.reason == "allowed by override") is (in_force == "allow"), (pin, action)
            if in_force == "monitor":
                assert d.is_continue, (pin, action)
    finally:
        engine.close()
        store.close()
