"""A list server is not a spammer posing as lists (issue 19, defect 4).

"More than one mailing list from one sender" is the talk's sign of a spammer
posing as lists. A Mailman host posting four lists, every delivery working,
is a list server, on a smarthost and an MX alike; a host rotating list
identities, or whose deliveries fail, still weighs. Each test runs the
engine on the shipped config (tests/test_engine_lists.py) with an injected
clock and a real SQLite store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extrusion.report.words import summary
from extrusion.scoring.baseline import MAX_LISTS, Baseline
from extrusion.scoring.events import Headers, State, Status
from extrusion.scoring.standing import LIST_PROVEN_SECONDS, MAX_UNPROVEN_LISTS, is_list_server
from extrusion.scoring.store import Store

from .test_engine import UNKNOWN, Harness
from .test_engine_lists import members, shipped

MAILMAN = "ip:192.0.2.25"
HOUR = 3600.0


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(**sections: Any) -> Harness:
        h = Harness(shipped(tmp_path, **sections))
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


def post(h: Harness, sender: str, name: str, rcpts: list[str], *,
         failing_every: int = 0) -> None:
    """One Mailman post of list `name`: its submission, then one outcome per member."""
    q = h.send(sender, rcpts, env_from=f"{name}-bounces@lists.example.org",
               headers=Headers(list_id=f"{name.title()} <{name}.lists.example.org>"))
    for i, r in enumerate(rcpts):
        h.clock.t += 0.1
        if failing_every and i % failing_every == 0:
            h.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r))
        else:
            h.result(q, r, Status.SENT, "250 2.0.0 Ok")


def lists_finding(h: Harness, sender: str) -> dict[str, Any]:
    h.engine.flush()
    stored = h.store.sender(sender)
    assert stored is not None
    finding: dict[str, Any] = stored.findings["mailing_lists"]
    return finding


@pytest.mark.parametrize("mode", ["smarthost", "mx"])
def test_a_mailman_host_posting_four_lists_all_day_is_never_throttled(
    make: Callable[..., Harness], mode: str,
) -> None:
    h = make(general={"mode": mode})
    names = ("announce", "users", "devel", "jobs")
    for hour in range(12):
        for name in names:
            h.clock.t += 5 * 60
            post(h, MAILMAN, name, members(40))  # every delivery works
        assert h.state(MAILMAN) is State.OK, f"hour {hour}"
    finding = lists_finding(h, MAILMAN)
    assert finding["lists"] == 4
    assert finding["weight"] == 0.0
    assert h.changes == []
    # What the abuse desk reads about it.
    assert summary("mailing_lists", finding).startswith("a list server: 4 mailing lists")


def test_a_spammer_rotating_list_identities_is_caught(make: Callable[..., Harness]) -> None:
    # Every post delivered, but every mailshot with a List-Id of its own.
    h = make()
    spammer = "ip:203.0.113.66"
    n = MAX_UNPROVEN_LISTS + 3
    for i in range(n):
        h.clock.t += 60
        post(h, spammer, f"deal{i}", [f"u{i}.{k}@example.com" for k in range(20)])
    extra = h.cfg.weights.extra_mailing_list
    # Once past a list server's handful the lists let pass before weigh too.
    assert lists_finding(h, spammer)["weight"] == pytest.approx((n - 1) * extra)
    assert h.state(spammer) in (State.THROTTLED, State.HELD)


def test_a_host_whose_deliveries_fail_gets_no_benefit_of_the_doubt(
    make: Callable[..., Harness],
) -> None:
    h = make()
    spammer = "ip:203.0.113.67"
    # Ten one-off messages to invented addresses bounce ...
    for i in range(10):
        h.clock.t += 10
        r = f"nobody{i}@example.org"
        h.result(h.send(spammer, [r]), r, Status.BOUNCED, UNKNOWN.format(r=r))
    # ... then three "lists", each post failing no more than a list's share.
    for name in ("promo", "offers", "news"):
        h.clock.t += 60
        post(h, spammer, name, [f"{name}{k}@example.com" for k in range(20)], failing_every=7)
    assert lists_finding(h, spammer)["weight"] == pytest.approx(
        2 * h.cfg.weights.extra_mailing_list)


def test_list_identities_proven_over_time_survive_a_restart(
    make: Callable[..., Harness], tmp_path: Path,
) -> None:
    names = [f"list{i}" for i in range(MAX_UNPROVEN_LISTS)]
    h = make()
    for _ in range(2):  # each list posts twice, over an hour apart: proven
        for name in names:
            h.clock.t += 60
            post(h, MAILMAN, name, members(20))
        h.clock.t += LIST_PROVEN_SECONDS
    assert lists_finding(h, MAILMAN)["weight"] == 0.0
    h.close()
    # The next day, a new process on the same store: the baseline (sender_baselines)
    # remembers the proven lists, so two new ones stay within a list server's handful.
    again = make()
    again.clock.t = h.clock.t + 24 * HOUR
    for name in [*names, "new1", "new2"]:
        again.clock.t += 60
        post(again, MAILMAN, name, members(20))
    finding = lists_finding(again, MAILMAN)
    assert finding["lists"] == MAX_UNPROVEN_LISTS + 2
    assert finding["weight"] == 0.0
    assert again.state(MAILMAN) is State.OK


def test_without_the_history_the_same_day_would_weigh(make: Callable[..., Harness]) -> None:
    # The counterpart of the test above: six identities never seen before are rotation.
    h = make()
    for name in [*(f"list{i}" for i in range(MAX_UNPROVEN_LISTS)), "new1", "new2"]:
        h.clock.t += 60
        post(h, MAILMAN, name, members(20))
    assert lists_finding(h, MAILMAN)["weight"] > 0.0


# --- what the baseline keeps for it -------------------------------------------------------------


def test_the_baseline_keeps_list_identities_bounded_and_survives_malformed_storage() -> None:
    b = Baseline()
    for i in range(MAX_LISTS + 5):
        b.saw_list(f"list{i}.example.org", 1000.0 + i)
    b.saw_list("list20.example.org", 9000.0)  # posted again: first post kept, latest moved
    assert len(b.lists) == MAX_LISTS
    assert "list0.example.org" not in b.lists  # the least recently posted went first
    assert b.lists["list20.example.org"] == [1020.0, 9000.0]
    b.outcome(True, 9)
    b.outcome(False)
    again = Baseline.from_json(b.to_json())
    assert (again.lists, again.delivered, again.failed) == (b.lists, 9, 1)
    broken = Baseline.from_json({"lists": {"a": [1.0], "b": "x", "c": [-1, 2], "d": [1, 2]},
                                 "delivered": -4, "failed": "many", "since": "yesterday"})
    assert broken.lists == {"d": [1.0, 2.0]}
    assert (broken.delivered, broken.failed, broken.since) == (0, 0, 0.0)


def test_outcome_counts_follow_recent_deliveries() -> None:
    b = Baseline()
    b.outcome(False, 1000)  # a bad start ...
    assert not is_list_server(b, [])
    for _ in range(20):
        b.outcome(True, 500)  # ... long since outweighed: the counts are halved as they grow
    assert b.delivered + b.failed <= 2 * 2000
    assert is_list_server(b, [])


def test_a_list_servers_standing_is_stored_alike_in_sqlite_and_postgresql(store_url: str) -> None:
    b = Baseline()
    b.learn(1000.0, "lists.example.org", "lists.example.org", None, 40)
    for name in ("announce", "users"):
        b.saw_list(f"{name}.lists.example.org", 1000.0)
        b.saw_list(f"{name}.lists.example.org", 1000.0 + LIST_PROVEN_SECONDS)
    b.outcome(True, 76)
    b.outcome(False, 4)
    with Store(store_url) as store:
        store.save_baselines({MAILMAN: b.to_json()}, 2000.0)
        back = Baseline.from_json(store.baselines(10)[MAILMAN])
    assert back.to_json() == b.to_json()
    assert is_list_server(back, ["announce.lists.example.org", "users.lists.example.org"])
