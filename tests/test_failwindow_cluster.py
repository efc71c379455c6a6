"""The failure window held across hosts: the ">20 failures" trigger for a bot spread
round-robin over three hosts on one store, each seeing a third of its failures.

A third of each message's recipients bounce: below `failure_share` (0.4), above a
list's share (0.2), so only the floor (`failure_trigger`, more than 20) can fire,
and the failure weight is small so the summed score alone throttles no one.
"""

from __future__ import annotations

from pathlib import Path

from extrusion.scoring.admin import operator_action
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Outcome, State, Status, Submission
from extrusion.scoring.kinds import Kind
from extrusion.scoring.store import Store
from tests.test_store_cluster import BOT, Clock, clock, cluster, engines_closed, sync

__all__ = ["clock", "engines_closed"]  # fixtures shared with test_store_cluster

TRIGGER_FLOOR = 20  # [scoring] failure_trigger
SYNC_EVERY = 3  # messages between two flushes of every host: one per host
LIGHT = {"weights": {"failed_recipient": 0.1}}


def throttled(engines: list[Engine]) -> list[bool]:
    return [e._senders.get(BOT) is not None and e._senders[BOT].state is State.THROTTLED
            for e in engines]


def third_bounce(engines: list[Engine], clock: Clock, messages: int, start: int = 0
                 ) -> int | None:
    """`messages` three-recipient messages round-robin, one recipient of each bouncing;
    returns how many failures were sent when a host first throttled (None: none did)."""
    for i in range(start, start + messages):
        e = engines[i % len(engines)]
        clock.t += 1.0
        qid = f"4F{i:05d}"
        dead, *alive = (f"dead{i}@example.org", f"a{i}@example.org", f"b{i}@example.org")
        e.submission(Submission(time=clock.t, sender=BOT, queue_id=qid,
                                envelope_from="bot@x.example", recipients=(dead, *alive),
                                client_addr="192.0.2.66"))
        for rcpt in alive:
            e.outcome(Outcome(time=clock.t, queue_id=qid, recipient=rcpt, status=Status.SENT,
                              dsn="2.0.0", reply="250 2.0.0 Ok"))
        e.outcome(Outcome(time=clock.t, queue_id=qid, recipient=dead, status=Status.BOUNCED,
                          dsn="5.1.1", reply=f"550 5.1.1 <{dead}>: user unknown"))
        if any(throttled(engines)):
            return i - start + 1
        if (i + 1) % SYNC_EVERY == 0:
            for host in engines:
                host.flush()  # what each daemon does about every second
    return None


def test_the_failure_trigger_holds_across_three_hosts(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    engines = cluster(store_url, tmp_path, clock, **LIGHT)
    engines_closed.extend(engines)
    fired_at = third_bounce(engines, clock, 36)  # 12 failures per host, never 21 on one
    assert fired_at is not None
    # More than the floor in all, seen at most one flush interval late.
    assert TRIGGER_FLOOR < fired_at <= TRIGGER_FLOOR + 1 + SYNC_EVERY
    host = next(e for e, t in zip(engines, throttled(engines), strict=True) if t)
    finding = host._senders[BOT].findings[Kind.TOO_MANY_FAILURES]
    assert finding["rule"] == "floor"
    assert finding["failed_recipients"] > TRIGGER_FLOOR
    assert 0 < finding["failed_elsewhere"] < finding["failed_recipients"]
    sync(engines, clock)
    assert throttled(engines) == [True, True, True]  # the state reaches the others


def test_without_shared_failures_each_host_counts_alone(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    engines = cluster(store_url, tmp_path, clock, store={"shared_failures": False}, **LIGHT)
    engines_closed.extend(engines)
    assert third_bounce(engines, clock, 36) is None
    with Store(store_url) as s:
        assert s.others_failures("nobody", 0.0) == []


def test_a_host_with_few_failures_writes_no_window(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    engines = cluster(store_url, tmp_path, clock, **LIGHT)
    engines_closed.extend(engines)
    third_bounce(engines, clock, 6)  # two failures per host: below shared_failures_from
    with Store(store_url) as s:
        assert s.others_failures("nobody", 0.0) == []
    third_bounce(engines, clock, 3, start=6)  # the third on each
    with Store(store_url) as s:
        rows = s.others_failures("nobody", 0.0)
    assert sorted((f, a) for _s, f, a, _t in rows) == [(3, 9)] * 3


def test_a_release_forgets_the_other_hosts_windows(
        store_url: str, tmp_path: Path, clock: Clock, engines_closed: list[Engine]) -> None:
    engines = cluster(store_url, tmp_path, clock, **LIGHT)
    engines_closed.extend(engines)
    third_bounce(engines, clock, 18)  # 18 failures: 6 per host, shared
    sync(engines, clock)
    assert engines[0]._senders[BOT].others_failed[0] == 12
    clock.t += 1.0
    operator_action(engines[0].config, "release", BOT, "customer cleaned up", "noc",
                    now=clock.t)
    sync(engines, clock)
    assert all(e._senders[BOT].others_failed == (0, 0) for e in engines)
    # Another 18 after the release: 18 in the window, not 36, so no trigger.
    assert third_bounce(engines, clock, 18, start=18) is None
