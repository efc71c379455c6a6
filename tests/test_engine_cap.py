"""The cap on senders in memory ([scoring] max_senders): who is forgotten, who is kept,
and how a forgotten sender comes back from the store. Time is injected throughout."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extrusion.config import Config
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

from . import helpers
from .helpers import Clock

T0 = 1_700_000_000.0


def make_config(url: str, tmp_path: Path, mta: str, max_senders: int, **scoring: Any) -> Config:
    return helpers.config(
        tmp_path, url, hostname=mta,
        store={"spool_dir": str(tmp_path / f"spool-{mta}"), "flush_batch": 10**9},
        probation={"enabled": False},
        # Failures are told by their count alone here: no share verdict.
        scoring={"max_senders": max_senders, "share_min_failures": 1000, **scoring},
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'extrusion.db'}"


def engine_with(url: str, tmp_path: Path, clock: Clock, max_senders: int,
                mta: str = "mx1") -> Engine:
    return open_engine(make_config(url, tmp_path, mta, max_senders), clock)


def ip(i: int) -> str:
    return f"ip:10.{i // 65536}.{i // 256 % 256}.{i % 256}"


def seen(engine: Engine, clock: Clock, key: str) -> None:
    """One recipient from `key` at the current time, as a policy request shows it."""
    clock.t += 1.0
    engine.decide(key, Stage.RCPT, 1, clock.t, client_addr=key[3:],
                  envelope_from="user@example.net", recipient="friend@example.org")


def fail(engine: Engine, clock: Clock, key: str, n: int, tag: str) -> None:
    for i in range(n):
        clock.t += 1.0
        r = f"{tag}{i}@example.org"
        engine.submission(Submission(clock.t, key, f"{tag}{i:05d}", "u@example.net", (r,)))
        engine.outcome(Outcome(clock.t, f"{tag}{i:05d}", r, Status.BOUNCED, "5.1.1",
                               "550 5.1.1 user unknown", sender=key))


def in_memory(engine: Engine) -> set[str]:
    return set(engine._senders)


@pytest.fixture
def small(sqlite_url: str, tmp_path: Path, clock: Clock) -> Iterator[Engine]:
    e = engine_with(sqlite_url, tmp_path, clock, max_senders=10)
    yield e
    e.close()


def test_the_least_recently_active_ok_senders_are_forgotten(small: Engine, clock: Clock) -> None:
    for i in range(10):
        seen(small, clock, ip(i))
    small.flush()  # written: forgettable now
    seen(small, clock, ip(3))  # active again: among the most recent
    small.flush()
    seen(small, clock, ip(100))  # the eleventh
    assert len(in_memory(small)) <= 10
    assert ip(0) not in in_memory(small)  # the least recently active went first
    assert {ip(3), ip(100)} <= in_memory(small)
    assert small.status()["senders_evicted"] >= 1


def test_watched_pinned_and_unwritten_senders_are_kept(small: Engine, clock: Clock) -> None:
    fail(small, clock, "ip:192.0.2.66", 25, "bot")  # throttled on its failures
    small.operator(OperatorAction(clock.t, "ip:192.0.2.7", OperatorVerb.ALLOW, "ops", "vip"))
    small.operator(OperatorAction(clock.t, "ip:192.0.2.8", OperatorVerb.BLOCK, "ops", "abuse"))
    small.flush()
    assert small.decide("ip:192.0.2.66", Stage.RCPT, count=False).state is State.THROTTLED
    for i in range(30):
        seen(small, clock, ip(i))
        if i < 20:
            small.flush()  # the last ten stay unwritten
    kept = in_memory(small)
    assert {"ip:192.0.2.66", "ip:192.0.2.7", "ip:192.0.2.8"} <= kept
    assert {ip(i) for i in range(20, 30)} <= kept  # nothing pending is ever forgotten
    assert not {ip(i) for i in range(10)} & kept
    small.flush()
    assert len(in_memory(small)) <= 10


def test_kept_senders_above_the_cap_are_logged_once_and_counted(
        sqlite_url: str, tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    e = engine_with(sqlite_url, tmp_path, clock, max_senders=3)
    try:
        with caplog.at_level(logging.WARNING, logger="extrusion.scoring"):
            for i in range(8):
                e.operator(OperatorAction(clock.t, ip(i), OperatorVerb.BLOCK, "ops", "abuse"))
                e.flush()
            for i in range(8, 12):  # ok senders: back under the cap, then over again
                seen(e, clock, ip(i))
                e.flush()
            for i in range(12, 14):
                e.operator(OperatorAction(clock.t, ip(i), OperatorVerb.BLOCK, "ops", "x"))
                e.flush()
        assert {ip(i) for i in (*range(8), 12, 13)} <= in_memory(e)  # every one kept
        assert e.status()["senders_over_cap"] >= 6
        warnings = [r for r in caplog.records if "max_senders" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        e.close()


def test_a_forgotten_sender_comes_back_with_its_score_and_findings(
        store_url: str, tmp_path: Path, clock: Clock) -> None:
    e = engine_with(store_url, tmp_path, clock, max_senders=5)
    try:
        fail(e, clock, "ip:192.0.2.66", 6, "old")  # 6 points: below watch (10)
        e.flush()
        before = e.decide("ip:192.0.2.66", Stage.RCPT, count=False)
        assert before.state is State.OK and before.score > 5.9
        for i in range(10):
            seen(e, clock, ip(i))
            e.flush()
        assert "ip:192.0.2.66" not in in_memory(e)
        assert e.decide("ip:192.0.2.66", Stage.RCPT, count=False).score == 0.0
        # Seen again: five more failures. Alone they are 5 points; with what the store
        # kept they pass watch_score.
        fail(e, clock, "ip:192.0.2.66", 5, "new")
        e.flush()
        after = e.decide("ip:192.0.2.66", Stage.RCPT, count=False)
        assert after.score > 10.0
        assert after.state is State.WATCH
        e.flush()
        row = e.store.sender("ip:192.0.2.66")
        assert row is not None and row.state == "watch" and row.score > 10.0
        # Its findings go on from where they were: 6 failures before, 5 after.
        assert row.findings["failed_recipients"]["count"] == 11
        assert row.findings["failed_recipients"]["examples"][0] == "old0@example.org"
    finally:
        e.close()


def test_a_forgotten_sender_another_mta_throttled_comes_back_throttled(
        store_url: str, tmp_path: Path, clock: Clock) -> None:
    a = engine_with(store_url, tmp_path, clock, max_senders=5, mta="mx1")
    b = engine_with(store_url, tmp_path, clock, max_senders=5, mta="mx2")
    try:
        seen(a, clock, "ip:192.0.2.66")
        a.flush()
        for i in range(10):
            seen(a, clock, ip(i))
            a.flush()
        assert "ip:192.0.2.66" not in in_memory(a)
        fail(b, clock, "ip:192.0.2.66", 25, "bot")
        b.flush()
        a.refresh(clock.t)
        assert a.decide("ip:192.0.2.66", Stage.RCPT, count=False).state is State.THROTTLED
    finally:
        a.close()
        b.close()


def test_an_engine_starting_on_a_big_store_keeps_the_most_recent(
        sqlite_url: str, tmp_path: Path, clock: Clock) -> None:
    big = engine_with(sqlite_url, tmp_path, clock, max_senders=0)
    try:
        for i in range(30):
            fail(big, clock, ip(i), 2, f"s{i}-")  # 2 points each: worth remembering
            big.flush()
    finally:
        big.close()
    e = engine_with(sqlite_url, tmp_path, clock, max_senders=10)
    try:
        kept = in_memory(e)
        assert len(kept) <= 10
        assert ip(29) in kept and ip(0) not in kept  # the most recently active stay
        assert e.decide(ip(0), Stage.RCPT, count=False).score == 0.0  # not in memory
    finally:
        e.close()


def test_the_cap_holds_under_50k_distinct_senders(
        sqlite_url: str, tmp_path: Path, clock: Clock) -> None:
    cap, flush_every = 1_000, 500
    e = engine_with(sqlite_url, tmp_path, clock, max_senders=cap)
    try:
        peak = 0
        for i in range(50_000):
            clock.t += 0.01
            e.decide(ip(i), Stage.RCPT, 1, clock.t, client_addr=ip(i)[3:],
                     envelope_from="u@example.net", recipient="r@example.org")
            peak = max(peak, e.status()["senders"] if i % 97 == 0 else 0)
            if i % flush_every == flush_every - 1:
                e.flush()  # what the policy daemon's sync does every few seconds
                assert e.status()["senders"] <= cap
        # Between flushes only the not-yet-written ones can push it over.
        assert peak <= cap + flush_every
        assert e.status()["senders_evicted"] >= 49_000
    finally:
        e.close()
