"""With a real pmacct `sfacctd` on loopback: sFlow v5 datagrams built here go in, its
print plugin writes JSON lines, extrusion's follower reads them into the engine.

Scenarios from issue 18: a consumer bot sending straight to many MX hosts is
found; a business mail server in an allowed range is not; a consumer posting
to one fixed host now and then is not; a simulated day sampled 1 in 2,000.
sfacctd stamps records with the time they arrive, so the day's samples go
through it in seconds: what it shows is that the sampled volume of a day
survives the collector and still tells the bot from the others. The
hour-by-hour pattern of a day is tested on records with the day's own times
(tests/test_flows_analysis.py, benchmarks/flows.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from extrusion.config import Config, from_dict
from extrusion.flows.follow import FlowFollower
from extrusion.flows.sflowgen import Sample
from extrusion.flows.simulate import Sender, mx_address, sampled
from extrusion.scoring.engine import Engine
from extrusion.scoring.kinds import Kind
from extrusion.scoring.store import Store

from .flows_harness import Sfacctd, sfacctd  # noqa: F401

pytestmark = pytest.mark.integration

BOT = "10.1.2.3"
BUSINESS = "192.0.2.25"
CONSUMER = "10.9.9.9"
RATE = 2000


def make_config(tmp: Path, path: Path) -> Config:
    return from_dict({
        "general": {"own_networks": ["10.0.0.0/8"]},
        "store": {"url": f"sqlite:///{tmp / 'extrusion.db'}", "spool_dir": str(tmp / "spool")},
        "customers": [{"name": "acme", "networks": ["192.0.2.0/24"]}],
        "flows": {"path": str(path), "start_at": "beginning", "allow_customers": ["acme"]},
    }, tmp / "extrusion.toml")


@pytest.fixture
def cfg(tmp_path: Path, sfacctd: Sfacctd) -> Config:  # noqa: F811
    return make_config(tmp_path, sfacctd.output)


@pytest.fixture
def engine(cfg: Config) -> Any:
    eng = Engine(cfg, Store(cfg.store.url), own_store=True)
    yield eng
    eng.close()


def state(engine: Engine, key: str) -> str:
    engine.flush()
    row = engine.store.sender(key)
    return row.state if row is not None else "unknown"


def test_a_consumer_bot_is_found_across_a_rotation_of_pmacct_output(
        sfacctd: Sfacctd, engine: Engine, cfg: Config) -> None:  # noqa: F811
    follower = FlowFollower(cfg, engine)
    sfacctd.send([Sample(BOT, mx_address(i)) for i in range(6)], RATE)
    sfacctd.wait_for({BOT: 6})
    follower.poll()
    assert follower.feed.stats.parsed >= 6 and follower.feed.stats.findings == 0
    # logrotate's rename + create; sfacctd opens the file anew at its next purge.
    rotated = sfacctd.output.with_name("port25.json.1")
    os.rename(sfacctd.output, rotated)
    sfacctd.send([Sample(BOT, mx_address(i)) for i in range(6, 30)], RATE)
    sfacctd.wait_for({BOT: 24})
    follower.poll()
    follower.close()
    assert follower.feed.stats.bad == 0
    assert follower.feed.stats.findings == 1
    assert state(engine, f"ip:{BOT}") == "throttled"
    row = engine.store.sender(f"ip:{BOT}")
    assert row is not None
    f = row.findings[Kind.DIRECT_TO_MX]
    assert f["destinations"] >= 10 and f["packets"] >= 10 * RATE
    # The checkpoint names the new file: a restart reads nothing twice.
    again = FlowFollower(cfg, engine)
    assert again.poll() == 0
    again.close()


def test_an_allowed_business_and_an_occasional_consumer_are_not_flagged(
        sfacctd: Sfacctd, engine: Engine, cfg: Config) -> None:  # noqa: F811
    samples = [Sample(BUSINESS, mx_address(i)) for i in range(40)]
    samples += [Sample(CONSUMER, "203.0.113.25") for _ in range(8)]
    sfacctd.send(samples, RATE)
    sfacctd.wait_for({BUSINESS: 40, CONSUMER: 8})
    follower = FlowFollower(cfg, engine)
    follower.poll()
    follower.close()
    assert follower.feed.stats.parsed >= 2
    assert follower.feed.stats.findings == 0
    assert follower.feed.analysis.skipped.get("allowed to send directly", 0) >= 1
    assert state(engine, "customer:acme") == "unknown"
    assert state(engine, f"ip:{CONSUMER}") == "unknown"


def test_a_simulated_day_sampled_one_in_2000(
        sfacctd: Sfacctd, engine: Engine, cfg: Config) -> None:  # noqa: F811
    senders = [
        Sender(BOT, per_hour=1000),
        Sender(BUSINESS, per_hour=300, hours=tuple(range(8, 18))),
        Sender(CONSUMER, per_hour=4, mx_pool=1),
    ]
    day = [s for _t, s in sampled(senders, RATE, 1_796_515_200.0, 24, seed=7)]
    sent = {a: sum(1 for s in day if s.src == a) for a in (BOT, BUSINESS, CONSUMER)}
    assert sent[BOT] > 60  # ~5 an hour: what 1 in 2,000 leaves of 10,000 packets
    sfacctd.send(day, RATE)
    sfacctd.wait_for({k: v for k, v in sent.items() if v})
    written = sfacctd.packets()
    assert {a: written.get(a, 0) for a in sent} == sent  # none lost
    follower = FlowFollower(cfg, engine)
    follower.poll()
    follower.close()
    assert follower.feed.stats.bad == 0
    assert state(engine, f"ip:{BOT}") in ("throttled", "held")
    assert state(engine, "customer:acme") == "unknown"
    assert state(engine, f"ip:{CONSUMER}") == "unknown"
