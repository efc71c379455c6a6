"""Who is under attention, kept at each change (`scoring.attention.AttentionIndex`).

The engine keeps the senders under attention as they move, so that the
milter-attach socketmap's question costs the few senders under attention, not
a pass over every sender in memory. Whatever moves a sender, the kept answer
must equal the definition, `attention_of()` over every sender in memory: a
seeded random walk over the engine's public API (evidence, probation and its
end, operator pins and releases, another host's and the CLI's actions through
the store, time passing, the cap on senders in memory, config reloads, a
restart) checks it after every step, on both store backends.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extrusion.config import Config
from extrusion.scoring import admin
from extrusion.scoring.attention import AttentionIndex, attention_of
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import (
    OperatorAction,
    OperatorVerb,
    Outcome,
    Stage,
    State,
    Status,
    Submission,
)
from extrusion.scoring.memory import SenderMemory

from . import helpers
from .helpers import Clock

ADDRESSES = ("192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.4", "203.0.113.5")
IP_KEYS = tuple(f"ip:{a}" for a in ADDRESSES[:4])
SASL_KEYS = ("sasl:ann@example.net", "sasl:bob@example.net", "sasl:cy@example.net")
CUSTOMER = "customer:acme"  # 203.0.113.0/28
FORGED = "kwntefsqhi@usa.net"  # a freemail sender without authentication: probation
VERBS = tuple(OperatorVerb)
STEPS = 160

# Config variants a reload switches between: config pins (an `allow` pin leaves a
# sender on probation in state ok), and a cap that forgets senders.
OVERRIDES: tuple[list[dict[str, str]], ...] = (
    [],
    [{"match": SASL_KEYS[0], "action": "allow", "reason": "the boss"},
     {"match": IP_KEYS[1], "action": "allow", "reason": "the boss's NAT"}],
    [{"match": IP_KEYS[2], "action": "hold", "reason": "suspect"},
     {"match": "192.0.2.0/24", "action": "monitor", "reason": "lab"}],
)


def make_config(url: str, tmp: Path, mta: str, overrides: list[dict[str, str]],
                max_senders: int) -> Config:
    return helpers.config(
        tmp, url, hostname=mta,
        store={"spool_dir": str(tmp / f"spool-{mta}")},
        customers=[{"name": "acme", "networks": ["203.0.113.0/28"]}],
        overrides=overrides,
        scoring={"max_senders": max_senders, "share_min_failures": 1000},
        probation={"recipients": 3, "release_deliveries": 2, "min_failures": 2,
                   "max_seconds": 1800.0},
    )


def kept_as_defined(engine: Engine) -> None:
    assert engine.attention() == attention_of(engine._senders.values())


class Walk:
    """Two MTAs on one store and the CLI beside them, moved at random."""

    def __init__(self, url: str, tmp: Path, seed: int) -> None:
        self.url, self.tmp = url, tmp
        self.rnd = random.Random(seed)
        self.clock = Clock()
        self.overrides: list[dict[str, str]] = []
        self.max_senders = 0
        self.a = self.open("mx1")
        self.b = self.open("mx2")
        self.n = 0
        self.seen: Counter[str] = Counter()  # what the walk went through, checked at the end

    def config(self, mta: str) -> Config:
        return make_config(self.url, self.tmp, mta, self.overrides, self.max_senders)

    def open(self, mta: str) -> Engine:
        return open_engine(self.config(mta), self.clock)

    def close(self) -> None:
        self.a.close()
        self.b.close()

    def tick(self) -> float:
        self.n += 1
        return self.clock.advance(self.rnd.choice((0.5, 1.0, 7.0)))

    def sender(self) -> tuple[str, str]:
        """A key and the address it comes from (SASL users move between addresses)."""
        pick = self.rnd.random()
        if pick < 0.45:
            key = self.rnd.choice(IP_KEYS)
            return key, key[len("ip:"):]
        if pick < 0.85:
            return self.rnd.choice(SASL_KEYS), self.rnd.choice(ADDRESSES)
        return CUSTOMER, "203.0.113.9"

    # --- the steps -----------------------------------------------------------------------

    def forged(self) -> None:
        key, addr = self.sender()
        now = self.tick()
        self.a.decide(key, Stage.RCPT, 1, now, client_addr=addr, envelope_from=FORGED,
                      recipient=f"r{self.n}@remote.example")

    def plain(self) -> None:
        key, addr = self.sender()
        self.a.decide(key, Stage.RCPT, 1, self.tick(), client_addr=addr,
                      envelope_from="someone@example.net",
                      recipient=f"r{self.n}@remote.example")

    def outcomes(self, status: Status) -> None:
        key, addr = self.sender()
        now = self.tick()
        qid = f"Q{self.n:07d}"
        rcpts = tuple(f"r{self.n}-{i}@remote.example" for i in range(self.rnd.randint(1, 6)))
        self.a.submission(Submission(now, key, qid, "someone@example.net", rcpts,
                                     client_addr=addr))
        dsn, reply = (("2.0.0", "250 2.0.0 Ok") if status is Status.SENT
                      else ("5.1.1", "550 5.1.1 user unknown"))
        for r in rcpts:
            self.a.outcome(Outcome(now, qid, r, status, dsn, reply, sender=key))

    def failures(self) -> None:
        self.outcomes(Status.BOUNCED)

    def deliveries(self) -> None:
        self.outcomes(Status.SENT)

    def operator(self) -> None:
        key, _ = self.sender()
        self.a.operator(OperatorAction(self.tick(), key, self.rnd.choice(VERBS), "kim", "walk"))

    def elsewhere(self) -> None:
        """Another MTA or the CLI acts through the store; this one hears at its refresh."""
        key, _ = self.sender()
        verb = self.rnd.choice(VERBS)
        now = self.tick()
        if self.rnd.random() < 0.5:
            self.b.operator(OperatorAction(now, key, verb, "lee", "elsewhere"))
            self.b.flush()
        else:
            admin.operator_action(self.config("cli"), verb.value, key, "from the CLI", "max",
                                  now)
        self.a.refresh(now)

    def flush(self) -> None:
        self.a.flush()

    def later(self) -> None:
        """Time passes: evidence decays, probation runs out, housekeeping forgets."""
        self.clock.advance(self.rnd.choice((60.0, 1200.0, 2400.0, 4 * 3600.0)))
        self.a.flush()

    def reload(self) -> None:
        self.overrides = self.rnd.choice(OVERRIDES)
        self.max_senders = self.rnd.choice((0, 0, 4))
        self.a.reload(self.config("mx1"))

    def restart(self) -> None:
        self.a.close()
        self.a = self.open("mx1")
        self.seen["restart with attention"] += bool(self.a.attention().keys)

    def steps(self) -> list[tuple[Callable[[], None], int]]:
        return [(self.forged, 5), (self.plain, 4), (self.failures, 4), (self.deliveries, 3),
                (self.operator, 2), (self.elsewhere, 2), (self.flush, 3), (self.later, 1),
                (self.reload, 1), (self.restart, 1)]

    def run(self, steps: int) -> None:
        moves, weights = zip(*self.steps(), strict=True)
        for _ in range(steps):
            move = self.rnd.choices(moves, weights)[0]
            move()
            kept_as_defined(self.a)
            kept_as_defined(self.b)
            self.note()

    def note(self) -> None:
        for mem in self.a._senders.values():
            if mem.probation is not None:
                self.seen["probation"] += 1
                if mem.state is State.OK:
                    self.seen["probation in state ok"] += 1
            if mem.state is not State.OK:
                self.seen[mem.state.value] += 1
        # (a restart's engine counts from 0 again)
        self.seen["evicted"] = max(self.seen["evicted"], self.a.status()["senders_evicted"])


@pytest.mark.parametrize("seed", [1, 2])
def test_the_kept_attention_equals_a_pass_over_every_sender(store_url: str, tmp_path: Path,
                                                           seed: int) -> None:
    walk = Walk(store_url, tmp_path, seed)
    try:
        walk.run(STEPS)
    finally:
        walk.close()
    # The walk went where the kept answer could go wrong, not only round the easy cases.
    for what in ("probation", "watch", "held", "blocked", "evicted"):
        assert walk.seen[what], (what, walk.seen)


def test_probation_under_a_config_allow_pin_is_attention_without_a_state(
        tmp_path: Path) -> None:
    """An `allow` pin from the config keeps the sender ok while it enters probation and
    leaves it on good outcomes: no state changes, and attention follows both moves."""
    clock = Clock()
    allow = [{"match": IP_KEYS[0], "action": "allow", "reason": "the boss"}]
    engine = open_engine(make_config(f"sqlite:///{tmp_path / 's.db'}", tmp_path, "mx1",
                                     allow, 0), clock)
    key, addr = IP_KEYS[0], ADDRESSES[0]
    try:
        engine.decide(key, Stage.RCPT, 1, clock.advance(1), client_addr=addr,
                      envelope_from=FORGED, recipient="a@remote.example")
        mem = engine._senders[key]
        assert (mem.state, mem.probation is not None) == (State.OK, True)
        assert engine.attention().keys == {key}
        assert engine.attention().addresses == {addr}
        rcpts = ("c@remote.example", "d@remote.example")  # release_deliveries: 2
        now = clock.advance(60)
        engine.submission(Submission(now, key, "Q1", FORGED, rcpts, client_addr=addr))
        for r in rcpts:
            engine.outcome(Outcome(now, "Q1", r, Status.SENT, "2.0.0", "250 2.0.0 Ok",
                                   sender=key))
        assert mem.probation is None
        assert engine.attention().keys == frozenset()
        kept_as_defined(engine)
    finally:
        engine.close()


# --- the index alone ---------------------------------------------------------------------


def sender(key: str, addr: str, state: State = State.OK, probation: Any = None
           ) -> SenderMemory:
    mem = SenderMemory(key, 0.0, 3600.0)
    mem.client_addr, mem.state, mem.probation = addr, state, probation
    return mem


def test_an_address_stays_while_any_sender_under_attention_was_last_seen_there() -> None:
    index = AttentionIndex()
    ann = sender("sasl:ann", "192.0.2.1", State.WATCH)
    bob = sender("sasl:bob", "192.0.2.1", probation=object())
    index.note(ann)
    index.note(bob)
    assert index.attention().addresses == {"192.0.2.1"}
    ann.state = State.OK
    index.note(ann)
    assert index.attention().keys == {"sasl:bob"}
    assert index.attention().addresses == {"192.0.2.1"}  # bob is still seen there
    bob.client_addr = "192.0.2.2"
    index.note(bob)
    assert index.attention().addresses == {"192.0.2.2"}
    index.drop("sasl:bob")
    assert index.attention() == attention_of([ann])  # bob forgotten (the cap)
    assert len(index) == 0


def test_the_answer_is_made_again_only_after_a_change() -> None:
    index = AttentionIndex()
    held = sender("ip:192.0.2.9", "192.0.2.9", State.HELD)
    index.note(held)
    first = index.attention()
    index.note(held)  # nothing changed
    assert index.attention() is first
    held.state = State.OK
    index.note(held)
    assert index.attention() is not first
    assert index.attention().keys == frozenset()
