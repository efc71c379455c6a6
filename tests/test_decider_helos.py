"""A policy request's HELO at RCPT: the judge is asked only when the session's verdict
shows something (decider.py). The same decisions and the same evidence as when it is
asked at every recipient, over HELOs clean, lying and literal."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from extrusion.scoring import decider
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Stage
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.store import Store

from . import helpers
from .helpers import Clock

HELOS = ["pc.user1.example", "lrhnow.usa.net", "mail.usa.net", "[198.51.100.5]",
         "198.51.100.9", "JOHNS-PC", "mail.isp.example", "remote.example"]
CLIENTS = ["198.51.100.5", "198.51.100.9", "203.0.113.7"]
SENDERS = ["victim@usa.net", "u@customer.example", "", "x@remote.example"]
RCPTS = ["r@remote.example", "x@usa.net", "y@isp.example", "z@198.51.100.5"]


def _run(tmp: Path, seed: int) -> list[Any]:
    """Decisions and each sender's evidence after a varied stream of messages."""
    cfg = helpers.config(tmp, f"sqlite:///{tmp / 'x.db'}")
    store = Store(cfg.store.url)
    clock = Clock()
    engine = Engine(cfg, store, clock)
    rng = random.Random(seed)
    seen: list[Any] = []
    try:
        for _ in range(150):
            client, helo = rng.choice(CLIENTS), rng.choice(HELOS)
            sender = engine.sender_key(client_addr=client,
                                       sasl_user=rng.choice(["", "alice", "bob"]))
            env = rng.choice(SENDERS)
            rcpts = rng.sample(RCPTS, rng.randint(1, 3))
            for stage, rcpt in [*((Stage.RCPT, r) for r in rcpts), (Stage.EOM, "")]:
                clock.advance(rng.choice([0.0, 0.5, 30.0]))
                d = engine.decide(sender, stage, 1 if rcpt else len(rcpts), count=True,
                                  helos=(helo,), client_addr=client, envelope_from=env,
                                  recipient=rcpt, client_name=rng.choice(["", helo]))
                seen.append((d, engine.helo_note((helo,), client, "", env)))
        mems = engine._senders
        seen.append(sorted((k, m.score(clock.t, 3600.0), repr(m.findings), m.state)
                           for k, m in mems.items()))
    finally:
        engine.close()
        store.close()
    return seen


def _shown_asking_always(self: decider.Decider, mem: SenderMemory, now: float,
                         helos: tuple[str, ...], client: tuple[str, str], envelope_from: str,
                         recipient: str) -> bool:
    """`Decider._shown` as it was before the shortcut: the judge asked of every HELO."""
    book = self.book
    book.shown(mem, envelope_from, (recipient,), client[0], now)
    if helos:
        book.judge.helos(mem, helos, client[0], now, envelope_from=envelope_from,
                         recipients=(recipient,), client_name=client[1])
    if mem.dirty:
        book.changed(mem, now)
        return True
    return False


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_asking_the_judge_only_of_a_helo_that_shows_something_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shortcut = _run(tmp_path / "a", seed)
    # The general path: the judge asked at every recipient, whatever the verdict.
    monkeypatch.setattr(decider.Decider, "_shown", _shown_asking_always)
    assert _run(tmp_path / "b", seed) == shortcut
