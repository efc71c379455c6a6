"""Several smarthosts on one store: a bot spread round-robin over three hosts.

Each host is an Engine with its own Store (its own connections) and its own
`[general] hostname`, on one database; `sync()` is what each daemon does every
`[store] refresh_seconds`: flush, then refresh.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from extrusion.scoring.admin import operator_action
from extrusion.scoring.audit import DUPLICATE_SECONDS, duplicate
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Action, Outcome, Stage, Status, Submission
from extrusion.scoring.kinds import Kind
from extrusion.scoring.merging import merge_findings
from extrusion.scoring.rows import SenderRow
from extrusion.scoring.store import Store

from . import helpers
from .helpers import Clock

T0 = 1_700_000_000.0
BOT = "ip:192.0.2.66"
FAILED = Kind.FAILED_RECIPIENTS
HOSTS = ("mx1.example.net", "mx2.example.net", "mx3.example.net")
THROTTLED_RECIPIENTS = 20  # [limits.throttled] recipients_per_hour


def cluster(url: str, tmp_path: Path, clock: Clock, **settings: Any) -> list[Engine]:
    engines = []
    for host in HOSTS:
        spool = {"store": {"spool_dir": str(tmp_path / f"spool-{host}")}}
        cfg = helpers.config(tmp_path, url, hostname=host, **helpers.merge(spool, settings))
        engines.append(Engine(cfg, Store(url), clock, own_store=True))
    return engines


@pytest.fixture
def clock() -> Clock:
    return Clock()


def sync(engines: list[Engine], clock: Clock) -> None:
    for e in engines:
        e.flush()
    for e in engines:
        e.refresh(clock.t)


def put_throttled(url: str) -> None:
    """The bot as every host finds it: throttled by the evidence (score 30: between
    throttle_score 20 and hold_score 40 for the whole test)."""
    with Store(url) as s:
        s.put_sender(SenderRow(key=BOT, state="throttled", score=30.0, score_time=T0,
                               first_seen=T0, last_seen=T0, state_since=T0))


def round_robin(engines: list[Engine], clock: Clock, requests: int,
                every: int) -> int:
    """Recipients accepted when `requests` RCPTs go round-robin over the hosts, the
    hosts syncing after every `every` requests (one refresh interval's worth)."""
    accepted = 0
    for i in range(requests):
        clock.t += 1.0
        d = engines[i % len(engines)].decide(BOT, Stage.RCPT, 1, now=clock.t)
        accepted += d.action is Action.CONTINUE
        if (i + 1) % every == 0:
            sync(engines, clock)
    return accepted


@pytest.fixture
def engines_closed() -> Iterator[list[Engine]]:
    opened: list[Engine] = []
    yield opened
    for e in opened:
        e.close()


INTERVAL = 6  # requests between two syncs: two per host


def test_a_throttled_budget_holds_across_three_hosts(store_url: str, tmp_path: Path,
                                                      clock: Clock,
                                                      engines_closed: list[Engine]) -> None:
    put_throttled(store_url)
    engines = cluster(store_url, tmp_path, clock)
    engines_closed.extend(engines)
    assert all(e._senders[BOT].state.value == "throttled" for e in engines)
    accepted = round_robin(engines, clock, 90, INTERVAL)
    # The budget, plus at most what the other hosts accepted within one sync interval
    # before this host heard of it; never the budget once per host (60).
    assert THROTTLED_RECIPIENTS <= accepted <= THROTTLED_RECIPIENTS + INTERVAL


def test_the_other_hosts_share_arrives_with_each_flush_between_refreshes(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    put_throttled(store_url)
    engines = cluster(store_url, tmp_path, clock)
    engines_closed.extend(engines)
    accepted = 0
    for i in range(90):  # flushes only (about every second), no refresh at all
        clock.t += 1.0
        d = engines[i % len(engines)].decide(BOT, Stage.RCPT, 1, now=clock.t)
        accepted += d.action is Action.CONTINUE
        if (i + 1) % INTERVAL == 0:
            for e in engines:
                e.flush()
    assert THROTTLED_RECIPIENTS <= accepted <= THROTTLED_RECIPIENTS + INTERVAL


def test_a_watched_senders_budget_holds_across_three_hosts(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    with Store(store_url) as s:  # score 15: between watch_score 10 and throttle_score 20
        s.put_sender(SenderRow(key=BOT, state="watch", score=15.0, score_time=T0,
                               first_seen=T0, last_seen=T0, state_since=T0))
    engines = cluster(store_url, tmp_path, clock,
                      limits={"watch": {"recipients_per_hour": 12}},
                      scoring={"half_life_seconds": 86400.0 * 30})
    engines_closed.extend(engines)
    accepted = round_robin(engines, clock, 90, INTERVAL)
    assert 12 <= accepted <= 12 + INTERVAL


def test_without_shared_limits_each_host_has_its_own_budget(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    put_throttled(store_url)
    engines = cluster(store_url, tmp_path, clock, store={"shared_limits": False})
    engines_closed.extend(engines)
    assert round_robin(engines, clock, 90, INTERVAL) == THROTTLED_RECIPIENTS * len(HOSTS)


def test_a_host_that_sees_the_bot_alone_keeps_the_whole_budget(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    put_throttled(store_url)
    engines = cluster(store_url, tmp_path, clock)
    engines_closed.extend(engines)
    accepted = 0
    for _ in range(30):
        clock.t += 1.0
        accepted += engines[0].decide(BOT, Stage.RCPT, 1, now=clock.t).action is Action.CONTINUE
        sync(engines, clock)
    assert accepted == THROTTLED_RECIPIENTS
    # The other hosts count what the first one spent: nothing left for the bot there.
    clock.t += 1.0
    assert engines[1].decide(BOT, Stage.RCPT, 1, now=clock.t).action is Action.TEMPFAIL


def test_the_other_hosts_share_ages_out_of_the_window(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    put_throttled(store_url)
    engines = cluster(store_url, tmp_path, clock, scoring={"half_life_seconds": 86400.0 * 30})
    engines_closed.extend(engines)
    for _ in range(THROTTLED_RECIPIENTS):
        clock.t += 1.0
        engines[0].decide(BOT, Stage.RCPT, 1, now=clock.t)
    sync(engines, clock)
    assert engines[1].decide(BOT, Stage.RCPT, 1, now=clock.t).action is Action.TEMPFAIL
    clock.t += 3600.0 + 120.0
    sync(engines, clock)
    assert engines[1].decide(BOT, Stage.RCPT, 1, now=clock.t).action is Action.CONTINUE


def test_a_block_from_elsewhere_is_logged_in_the_operators_words(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    with Store(store_url) as s:
        s.put_sender(SenderRow(key=BOT, state="throttled", score=30.0, score_time=T0,
                               first_seen=T0, last_seen=T0, state_since=T0,
                               findings={"failed_recipients": {"count": 25, "weight": 30.0,
                                                               "last": T0}}))
    engines = cluster(store_url, tmp_path, clock)
    engines_closed.extend(engines)
    assert engines[0].decide(BOT, Stage.RCPT, 1, now=clock.t + 1).action is Action.CONTINUE
    operator_action(engines[1].config, "block", BOT, "account stolen, ticket 4411", "noc",
                    now=clock.t + 2)
    clock.t += 3
    engines[0].refresh(clock.t)
    d = engines[0].decide(BOT, Stage.RCPT, 1, now=clock.t)
    assert d.action is Action.REJECT
    assert d.reason == "blocked (score 30.0): block by noc: account stolen, ticket 4411"


# --- evidence from three hosts adds up; one audit row per transition ---------------------------


def spread_failures(engines: list[Engine], clock: Clock, n: int, every: int = 3) -> None:
    """`n` one-recipient messages from the bot, round-robin, each bounced (5.1.1)."""
    for i in range(n):
        e = engines[i % len(engines)]
        clock.t += 1.0
        rcpt = f"user{i}@example.org"
        e.submission(Submission(time=clock.t, sender=BOT, queue_id=f"4Q{i:04d}",
                                envelope_from="bot@x.example", recipients=(rcpt,),
                                client_addr="192.0.2.66"))
        e.outcome(Outcome(time=clock.t, queue_id=f"4Q{i:04d}", recipient=rcpt,
                          status=Status.BOUNCED, dsn="5.1.1",
                          reply=f"550 5.1.1 <{rcpt}>: user unknown"))
        if (i + 1) % every == 0:
            sync(engines, clock)
    sync(engines, clock)


def test_failures_seen_by_three_hosts_add_up_in_the_store(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    engines = cluster(store_url, tmp_path, clock)
    engines_closed.extend(engines)
    spread_failures(engines, clock, 45)
    with Store(store_url) as s:
        row = s.sender(BOT)
    assert row is not None
    assert row.findings[FAILED]["count"] == 45  # not one host's 15
    # A host that starts later adds its own news only, not the others' again.
    late = cluster(store_url, tmp_path / "late", clock)
    engines_closed.extend(late)
    spread_failures(late[:1], clock, 2)
    with Store(store_url) as s:
        row = s.sender(BOT)
    assert row is not None and row.findings[FAILED]["count"] == 47


def test_one_audit_row_per_transition_from_three_hosts(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    engines = cluster(store_url, tmp_path, clock)
    engines_closed.extend(engines)
    spread_failures(engines, clock, 45)
    with Store(store_url) as s:
        trail = [(c.old.value, c.new.value) for c in s.state_changes(BOT)]
        row = s.sender(BOT)
    assert row is not None and row.state != "ok"
    # Every step of the climb once, in order, ending where the store says the bot is.
    assert len(trail) == len(set(trail)), trail
    assert trail[0][0] == "ok" and trail[-1][1] == row.state
    assert all(a[1] == b[0] for a, b in pairwise(trail)), trail


def test_merge_findings_adds_what_each_host_noted() -> None:
    stored = {FAILED: {"count": 15, "weight": 15.0, "examples": ["a@x"], "first": 1.0,
                       "last": 9.0}}
    mine = {FAILED: {"count": 16, "weight": 16.0, "examples": ["b@x"], "first": 2.0,
                     "last": 10.0}}
    merged = merge_findings(stored, mine, added={FAILED: [4, 4.0]})[FAILED]
    assert (merged["count"], merged["weight"], merged["first"], merged["last"]) == (
        19, 19.0, 1.0, 10.0)
    assert merged["examples"] == ["a@x", "b@x"]
    # Without what was added (a file spooled before, the CLI): the newer entry, as before.
    assert merge_findings(stored, mine)[FAILED] == mine[FAILED]


def test_a_sender_that_flaps_on_one_host_keeps_every_transition() -> None:
    trail = [(100.0, "ok", "watch"), (110.0, "watch", "ok")]
    assert not duplicate(120.0, "ok", "watch", trail)  # back to ok in between: real
    assert duplicate(101.0, "ok", "watch", trail[:1])  # another host, the same move
    assert not duplicate(100.0 + DUPLICATE_SECONDS + 1, "ok", "watch", trail[:1])


# --- size: an outcome takes its recipient's "queued" row's place -------------------------------


def test_an_outcome_replaces_the_queued_row_in_a_later_flush(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    (e, *others) = cluster(store_url, tmp_path, clock)
    engines_closed.extend([e, *others])
    rcpts = ("a@example.org", "b@example.org")
    e.submission(Submission(time=clock.t, sender=BOT, queue_id="4SIZE1",
                            envelope_from="bot@x.example", recipients=rcpts,
                            client_addr="192.0.2.66"))
    e.flush()
    clock.t += 5.0
    e.outcome(Outcome(time=clock.t, queue_id="4SIZE1", recipient="a@example.org",
                      status=Status.SENT, dsn="2.0.0", reply="250 2.0.0 Ok"))
    e.flush()
    (msg,) = e.store.messages(BOT)
    assert sorted((r.recipient, r.status) for r in msg.recipients) == [
        ("a@example.org", "sent"), ("b@example.org", "queued")]  # b still waits
    assert e.store.undelivered_queue_ids(BOT) == ["4SIZE1"]
