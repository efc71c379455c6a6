"""The engine with its store, on both backends: agreement between processes, outages.

The outage is real: a SQLite file locked by another connection (every write
fails with "database is locked"), or a PostgreSQL database that refuses
connections and has its sessions terminated.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from extrusion.config import Config, from_dict
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import (
    Action,
    Connection,
    OperatorAction,
    OperatorVerb,
    Outcome,
    Stage,
    State,
    StateChange,
    Status,
    Submission,
)
from extrusion.scoring.store import Store

from . import helpers
from .helpers import Clock

T0 = 1_700_000_000.0
BOT = "ip:192.0.2.66"
PG_ADMIN_URL = os.environ.get(
    "EXTRUSION_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def make_config(url: str, tmp_path: Path, mta: str, **store: Any) -> Config:
    return helpers.config(
        tmp_path, url, hostname=mta,
        store={"spool_dir": str(tmp_path / f"spool-{mta}"), **store},
        # Summing evidence across MTAs is told with the count of failures alone: each
        # MTA's share of failures would throttle by itself (issue 13).
        scoring={"share_min_failures": 1000},
    )


def feed_failures(engine: Engine, clock: Clock, sender: str, n: int, tag: str) -> None:
    for i in range(n):
        clock.t += 1.0
        r = f"{tag}{i}@example.org"
        engine.submission(Submission(clock.t, sender, f"{tag}{i:05d}", "bot@example.net", (r,)))
        engine.outcome(Outcome(clock.t, f"{tag}{i:05d}", r, Status.BOUNCED, "5.1.1",
                               "550 5.1.1 user unknown", sender=sender))


@pytest.fixture
def two_mtas(store_url: str, tmp_path: Path) -> Iterator[tuple[Engine, Engine, Clock]]:
    clock = Clock()
    a = open_engine(make_config(store_url, tmp_path, "mx1"), clock)
    b = open_engine(make_config(store_url, tmp_path, "mx2"), clock)
    yield a, b, clock
    a.close()
    b.close()


def test_two_mtas_sum_their_evidence_and_agree(two_mtas: tuple[Engine, Engine, Clock]) -> None:
    a, b, clock = two_mtas
    heard_a: list[StateChange] = []
    a.add_listener(heard_a.append)
    feed_failures(a, clock, BOT, 12, "a")  # each MTA alone sees only "watch"
    feed_failures(b, clock, BOT, 12, "b")
    assert a.decide(BOT, Stage.RCPT, count=False).state is State.WATCH
    a.flush()
    b.flush()  # b's write adds to a's: the stored score is the sum
    assert b.decide(BOT, Stage.RCPT, count=False).state is State.THROTTLED
    b.flush()
    a.refresh()
    d = a.decide(BOT, Stage.RCPT, count=False)
    assert d.state is State.THROTTLED and d.score == pytest.approx(
        b.decide(BOT, Stage.RCPT, count=False).score, rel=1e-6)
    assert [c.new for c in heard_a][-1] is State.THROTTLED
    trail = b.store.state_changes(BOT)
    assert [c.new for c in trail].count(State.THROTTLED) == 1  # audited once, by b


def test_operator_pin_on_one_mta_reaches_the_other(two_mtas: tuple[Engine, Engine, Clock]) -> None:
    a, b, clock = two_mtas
    a.operator(OperatorAction(clock.t, BOT, OperatorVerb.BLOCK, "kim", "spam run"))
    a.flush()
    assert b.decide(BOT, Stage.MAIL).is_continue  # not yet refreshed
    b.refresh()
    assert b.decide(BOT, Stage.MAIL).action is Action.REJECT
    a.operator(OperatorAction(clock.t, BOT, OperatorVerb.RELEASE, "kim", "cleaned"))
    a.flush()
    b.refresh()
    assert b.decide(BOT, Stage.MAIL).is_continue


def test_refresh_reads_whole_rows_only_of_others_writes(
        two_mtas: tuple[Engine, Engine, Clock], monkeypatch: pytest.MonkeyPatch) -> None:
    """What a refresh reads back of this engine's own flush it knows at that version:
    only another host's newer write, or a sender not in memory, is read in full."""
    a, b, clock = two_mtas
    read: list[list[str]] = []
    for engine in (a, b):
        keyed = engine.store.senders_keyed
        monkeypatch.setattr(engine.store, "senders_keyed",
                            lambda keys, keyed=keyed: read.append(list(keys)) or keyed(keys))
    feed_failures(a, clock, BOT, 12, "a")
    a.flush()
    a.refresh()
    assert read == []  # its own write, already adopted by the flush
    b.refresh()
    assert read == [[BOT]]  # not in b's memory: read, and remembered (state watch)
    assert b.decide(BOT, Stage.RCPT, count=False).state is State.WATCH
    feed_failures(b, clock, BOT, 12, "b")
    b.flush()
    read.clear()
    a.refresh()
    assert read == [[BOT]]  # b's newer version
    assert a.decide(BOT, Stage.RCPT, count=False).state is State.THROTTLED
    read.clear()
    a.refresh()
    assert read == []


def test_a_restarted_engine_remembers_states(store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    cfg = make_config(store_url, tmp_path, "mx1")
    e = open_engine(cfg, clock)
    feed_failures(e, clock, BOT, 25, "r")
    e.close()
    again = open_engine(cfg, clock)
    try:
        assert again.decide(BOT, Stage.RCPT, count=False).state is State.THROTTLED
    finally:
        again.close()


OFFICE = "ip:192.0.2.20"


def office_hours(engine: Engine, clock: Clock, hours: int) -> None:
    """An office server's ordinary mail: ten messages of two recipients an hour."""
    for h in range(hours):
        for i in range(10):
            clock.t += 360.0
            q = f"O{h:02d}{i:02d}"
            engine.submission(Submission(clock.t, OFFICE, q, "anna@firm.example",
                                         (f"c{i}@example.org", f"d{i}@example.org"),
                                         client_addr="192.0.2.20"))


def burst(engine: Engine, clock: Clock) -> None:
    """120 recipients at once, all at one domain (no spread): only its own history can
    say this is unusual for the sender."""
    clock.t += 60.0
    engine.submission(Submission(clock.t, OFFICE, "BURST", "anna@firm.example",
                                 tuple(f"m{i}@example.org" for i in range(120)),
                                 client_addr="192.0.2.20"))


def test_a_restarted_engine_keeps_each_senders_baseline(store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    cfg = make_config(store_url, tmp_path, "mx1")
    e = open_engine(cfg, clock)
    office_hours(e, clock, 3)
    learned = e._senders[OFFICE].baseline.to_json()
    assert learned["messages"] == 30 and learned["typical_hour"] > 0.0
    e.close()

    again = open_engine(cfg, clock)
    try:
        again.connection(Connection(time=clock.t, client_addr="192.0.2.20"))
        assert again._senders[OFFICE].baseline.to_json() == learned
        burst(again, clock)
        d = again.decide(OFFICE, Stage.RCPT, count=False)
        assert d.state is State.WATCH
        assert again._senders[OFFICE].probation is not None
        typical = f"typically {learned['typical_hour']:.0f}"
        assert typical in again._senders[OFFICE].probation.reason
    finally:
        again.close()

    # Without the stored baseline the same burst is a first hour: nothing to depart from.
    fresh = open_engine(make_config(f"sqlite:///{tmp_path}/fresh.db", tmp_path, "mx2"), clock)
    try:
        burst(fresh, clock)
        assert fresh.decide(OFFICE, Stage.RCPT, count=False).state is State.OK
    finally:
        fresh.close()


def test_a_sender_forgotten_while_idle_comes_back_with_its_baseline(
        store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    e = open_engine(make_config(store_url, tmp_path, "mx1"), clock)
    try:
        office_hours(e, clock, 3)
        e.flush()
        clock.t += 6 * 3600.0  # idle far beyond every window: housekeeping forgets it
        e.flush()
        assert OFFICE not in e._senders
        burst(e, clock)
        assert e.decide(OFFICE, Stage.RCPT, count=False).state is State.WATCH
    finally:
        e.close()


def test_stored_baselines_are_bounded(store_url: str, tmp_path: Path) -> None:
    store = Store(store_url)
    try:
        store.save_baselines({f"ip:192.0.2.{i}": {"messages": i, "helos": {"x" * 5000: 3}}
                              for i in range(1, 6)}, T0)
        store.save_baselines({"ip:192.0.2.5": {"messages": 50}}, T0 + 10)  # the latest wins
        newest = store.baselines(2)
        assert next(iter(newest)) == "ip:192.0.2.5" and len(newest) == 2
        assert newest["ip:192.0.2.5"] == {"messages": 50}
        kept = store.baselines(10)["ip:192.0.2.1"]
        name = next(iter(kept["helos"]))
        assert len(name) <= 1024 + 16  # a string in a JSON column keeps its bound
        assert store.prune(T0 + 5) == 4  # idle senders' baselines go with their mail
        assert list(store.baselines(10)) == ["ip:192.0.2.5"]
    finally:
        store.close()


# --- outages ----------------------------------------------------------------------------------


@contextmanager
def outage(url: str) -> Iterator[None]:
    """Make the store refuse service for real, and bring it back afterwards."""
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        assert path
        holder = sqlite3.connect(path, isolation_level=None, timeout=5)
        holder.execute("BEGIN EXCLUSIVE")  # every other writer now times out: locked
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    name = sa.make_url(url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_store_outage_spools_answers_from_memory_and_recovers(
    store_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    cfg = make_config(store_url, tmp_path, "mx1", busy_timeout_ms=200)
    engine = open_engine(cfg, clock)
    try:
        feed_failures(engine, clock, BOT, 10, "before")
        engine.flush()
        assert engine.store_ok and len(engine.spool) == 0
        with outage(store_url):
            feed_failures(engine, clock, BOT, 15, "during")  # 25 distinct failures in all
            engine.flush()
            assert not engine.store_ok
            assert "store unavailable" in engine.last_store_error
            assert len(engine.spool) == 1
            # Decisions keep coming, from memory.
            assert engine.decide(BOT, Stage.RCPT, count=False).state is State.THROTTLED
            engine.operator(OperatorAction(clock.t, BOT, OperatorVerb.HOLD, "kim", "during"))
            engine.flush()
            engine.refresh()  # fails quietly too
            assert len(engine.spool) == 2
            assert engine.decide(BOT, Stage.EOM).action is Action.HOLD
        engine.flush()  # the store is back: spool first, in order, then the new queue
        assert engine.store_ok and len(engine.spool) == 0
        store = engine.store
        msgs = store.messages(BOT)
        assert len(msgs) == 25
        assert sum(1 for m in msgs for r in m.recipients if r.status == "bounced") == 25
        row = store.sender(BOT)
        assert row is not None and row.state == "held" and row.pinned == "hold"
        assert row.score_at(clock.t, cfg.scoring.half_life_seconds) == pytest.approx(
            engine.decide(BOT, Stage.CONNECT).score, rel=1e-6)
        assert [c.new for c in store.state_changes(BOT)] == [
            State.WATCH, State.THROTTLED, State.HELD]
    finally:
        engine.close()


def test_engine_starts_while_the_store_is_down(store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    cfg = make_config(store_url, tmp_path, "mx1", busy_timeout_ms=200)
    Store(store_url).close()
    with outage(store_url):
        engine = open_engine(cfg, clock)
        try:
            assert not engine.store_ok
            feed_failures(engine, clock, BOT, 21, "cold")
            assert engine.decide(BOT, Stage.CONNECT).state is State.THROTTLED
            engine.flush()
            assert len(engine.spool) == 1
        except BaseException:
            engine.close()
            raise
    try:
        engine.refresh()
        engine.flush()
        assert engine.store_ok and len(engine.spool) == 0
        assert len(engine.store.messages(BOT)) == 21
    finally:
        engine.close()


def test_nothing_is_lost_when_store_and_spool_fail_together(
    store_url: str, tmp_path: Path
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    clock = Clock()
    cfg = from_dict({
        "general": {"hostname": "mx1"},
        "store": {"url": store_url, "spool_dir": str(tmp_path / "not-a-dir" / "spool"),
                  "busy_timeout_ms": 200},
    })
    engine = open_engine(cfg, clock)
    try:
        with outage(store_url):
            feed_failures(engine, clock, BOT, 5, "both")
            engine.flush()  # the store refuses and the spool cannot be written: kept in memory
            assert not engine.store_ok and engine.status()["queued"] > 0
        engine.flush()
        assert engine.store_ok and engine.status()["queued"] == 0
        assert len(engine.store.messages(BOT)) == 5
    finally:
        engine.close()
