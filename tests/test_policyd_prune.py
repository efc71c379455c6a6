"""Retention: the daemon deletes evidence older than `[store] retention_days`, keeps the rest;
its hourly prune keeps messages for `[store] detail_days`, minute counters for two days."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer, task

from extrusion.config import Config, from_dict
from extrusion.policyd.engineservice import EngineService
from extrusion.policyd.metrics import Metrics
from extrusion.scoring import schema
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Submission
from extrusion.scoring.rows import Batch
from extrusion.scoring.store import Store

from .test_policyd_server import ServerCase
from .test_policyd_support import make_config

DAY = 86400.0
T0 = 1_700_006_400  # a day's start (UTC)
KEY = "sasl:alice@example.net"


class RetentionTests(ServerCase):
    def config(self) -> Config:
        cfg = make_config(self.tmp, store={"retention_days": 7.0})
        now = time.time()
        # Written before the daemon starts, by an engine whose clock is set per message.
        with Store(cfg.store.url) as store:
            for age_days, qid in ((30, "OLD0001"), (1, "NEW0001")):
                at = now - age_days * DAY
                engine = Engine(cfg, store, clock=lambda at=at: at)
                engine.submission(Submission(
                    time=at, sender="ip:192.0.2.9", queue_id=qid, envelope_from="a@b.example",
                    recipients=("x@c.example",), mta="mta1.test"))
                engine.flush()
                engine.close()
            kept = [m.queue_id for m in store.messages("ip:192.0.2.9")]
        assert kept == ["OLD0001", "NEW0001"], kept  # the premise: both are there
        return cfg

    @defer.inlineCallbacks
    def test_old_messages_go_recent_ones_stay(self) -> Any:
        def queue_ids() -> list[str]:
            with Store(self.cfg.store.url) as store:
                return [m.queue_id for m in store.messages("ip:192.0.2.9")]

        deadline = time.monotonic() + 20
        while True:
            left = yield self.in_thread(queue_ids)
            if left == ["NEW0001"] or time.monotonic() > deadline:
                break
            yield self.in_thread(time.sleep, 0.2)
        self.assertEqual(left, ["NEW0001"])


def test_the_hourly_prune_drops_minute_counters_sooner_than_messages(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cfg = from_dict({"general": {"hostname": "mx1"},
                     "store": {"url": url, "spool_dir": str(tmp_path / "spool"),
                               "detail_days": 7, "retention_days": 30}})
    now = float(T0 + 10 * DAY)
    engine = Engine(cfg, Store(url), lambda: now, own_store=True)
    try:
        b = Batch()
        for day in range(10):
            t = T0 + day * DAY + 3600
            b.messages.append({"time": t, "mta": "mx1", "queue_id": f"Q{day}", "sender": KEY,
                               "rcpt_count": 1})
            b.recipients.append({"time": t + 1, "mta": "mx1", "queue_id": f"Q{day}",
                                 "sender": KEY, "recipient": "r@example.org",
                                 "status": "sent"})
            b.add_counter(KEY, "sent", int(t))
        engine.store.write_batch(b, 3600.0)
        service = EngineService(cfg, lambda: engine, task.Clock(), Metrics())
        service._prune(engine, now)
        with sa.create_engine(url).connect() as conn:
            kept = conn.execute(sa.select(schema.messages.c.queue_id)).scalars().all()
            c = schema.counters
            buckets = conn.execute(sa.select(c.c.bucket).where(c.c.name == "sent")).scalars().all()
        assert sorted(kept) == [f"Q{d}" for d in range(3, 10)]  # 7 days of detail
        # Two hours of minutes (none here); older ones are read from the messages kept.
        assert buckets == []
        assert engine.store.counters(KEY, "sent", now - DAY) == {T0 + 9 * DAY + 3600: 1.0}
        assert sum(engine.store.counters(KEY, "sent").values()) == 7.0
    finally:
        engine.close()
