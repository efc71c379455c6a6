"""A sender's first sight: its memory made cheaply, its decision still the store's.

A start leaves the quiet `ok` senders in the store (test_store_load.py), so on a
big store most senders are first seen after start-up and their memory is made
at `decide()`. That memory holds no evidence windows, baseline or message
counters until something is put in them; a sender the store knows as held or
blocked (a pin) is still decided from that state.
"""

from __future__ import annotations

from pathlib import Path

from extrusion.config import from_dict
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Action, Stage, State
from extrusion.scoring.limits import HOUR, HOUR_BUCKET, observed
from extrusion.scoring.memory import WINDOWS
from extrusion.scoring.rows import SenderRow
from extrusion.scoring.store import Store
from extrusion.scoring.sync import QUIET_HALF_LIVES

T0 = 1_700_000_000.0
HALF_LIFE = 3600.0
LONG_AGO = T0 - (QUIET_HALF_LIVES + 1) * HALF_LIFE
QUIET = 300  # quiet `ok` senders, never loaded
HELD = "sasl:held"
BLOCKED = "sasl:blocked"
HELD_LATER = "sasl:held-by-another-host"


def put(store: Store, key: str, t: float, state: str = "ok", score: float = 0.0,
        pinned: str | None = None) -> None:
    store.put_sender(SenderRow(key=key, state=state, score=score, score_time=t,
                               first_seen=t, last_seen=t, state_since=t, pinned=pinned))


def engine_on(url: str, tmp_path: Path) -> Engine:
    cfg = from_dict({"store": {"url": url, "spool_dir": str(tmp_path / "spool")},
                     "scoring": {"half_life_seconds": HALF_LIFE}})
    return Engine(cfg, Store(url), lambda: T0, own_store=True)


def test_held_and_blocked_senders_among_many_quiet_ones(store_url: str,
                                                         tmp_path: Path) -> None:
    with Store(store_url) as s:
        for i in range(QUIET):
            put(s, f"sasl:quiet{i}", LONG_AGO, score=1000.0)
        put(s, HELD, T0 - 60.0, state="held", score=100.0)
        put(s, BLOCKED, LONG_AGO, state="blocked", pinned="block")  # an operator's block
    engine = engine_on(store_url, tmp_path)
    try:
        assert set(engine._senders) == {HELD, BLOCKED}  # the quiet ones stayed in the store
        held = engine.decide(HELD, Stage.RCPT, 1, now=T0, recipient="a@example.org")
        assert held.action is Action.HOLD and held.state is State.HELD
        blocked = engine.decide(BLOCKED, Stage.RCPT, 1, now=T0)
        assert blocked.action is Action.REJECT and blocked.state is State.BLOCKED
        for i in range(0, QUIET, 7):
            d = engine.decide(f"sasl:quiet{i}", Stage.RCPT, 1, now=T0)
            assert d.action is Action.CONTINUE and d.state is State.OK and d.score == 0.0
        assert "sasl:quiet7" in engine._senders  # its memory made at first sight
        # Held by another host after this one started: the next refresh brings it in,
        # before this host has seen any of its mail.
        with Store(store_url) as s:
            put(s, HELD_LATER, T0 - 30.0, state="held", score=100.0)
        engine.refresh(T0)
        later = engine.decide(HELD_LATER, Stage.RCPT, 1, now=T0)
        assert later.action is Action.HOLD and later.state is State.HELD
        assert engine.decide(HELD, Stage.RCPT, 1, now=T0 + 1).action is Action.HOLD
    finally:
        engine.close()


def test_a_new_senders_memory_holds_only_what_it_used(tmp_path: Path) -> None:
    engine = engine_on(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    try:
        engine.decide("sasl:new", Stage.RCPT, 2, now=T0)
        mem = engine._senders["sasl:new"]
        assert [w for w in WINDOWS if mem.made(w) is not None] == []
        assert mem.made("baseline") is None
        rates = mem.rates
        assert rates is mem  # its counters in its memory: one object per sender
        assert rates.msg_hour is None and rates.msg_day is None
        assert isinstance(rates.rcpt_hour, tuple)  # one bucket: no counter object yet
        assert observed(rates.rcpt_hour, HOUR, HOUR_BUCKET, T0)[1] == 2
        # Made on first use, each as long as the judge says (a HELO is a habit: longer).
        judge = engine._book.judge
        assert mem.helos.window == judge.helo_window != mem.failed.window == judge.window
        assert mem.env_domains.window == judge.submission_window
        assert mem.helos.add("forged", T0) and "forged" in mem.helos
        mem.forget_locally(T0, {})
        assert mem.helos.count(T0) == 0 and mem.made("lists") is None
        # Forgotten once idle, a sender that never learnt a habit leaves no baseline
        # behind to crowd out the kept ones.
        engine.decide("sasl:idle", Stage.RCPT, 1, now=T0)
        engine.flush()
        book = engine._book
        with book.lock:
            book.housekeeping(T0 + 2 * 86400.0)
        assert "sasl:idle" not in engine._senders and len(book.baselines) == 0
    finally:
        engine.close()
