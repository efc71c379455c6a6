"""The policy daemon's hourly prune (policyd/engineservice.py) on a real engine and
store: messages kept for `[store] detail_days`, minute counters for two days."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from twisted.internet import task

from extrusion.config import from_dict
from extrusion.policyd.engineservice import EngineService
from extrusion.policyd.metrics import Metrics
from extrusion.scoring import schema
from extrusion.scoring.engine import Engine
from extrusion.scoring.rows import Batch
from extrusion.scoring.store import Store

DAY = 86400
T0 = 1_700_006_400  # a day's start (UTC)
KEY = "sasl:alice@example.net"


def test_the_hourly_prune_folds_minute_counters_sooner_than_messages(tmp_path: Path) -> None:
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
            b.add_counter(KEY, "sent", int(t))
        engine.store.write_batch(b, 3600.0)
        service = EngineService(cfg, lambda: engine, task.Clock(), Metrics())
        service._prune(engine, now)
        with sa.create_engine(url).connect() as conn:
            kept = conn.execute(sa.select(schema.messages.c.queue_id)).scalars().all()
            c = schema.counters
            buckets = conn.execute(sa.select(c.c.bucket).where(c.c.name == "sent")).scalars().all()
        assert sorted(kept) == [f"Q{d}" for d in range(3, 10)]  # 7 days of detail
        minutes = sorted(b for b in buckets if b % DAY)
        assert minutes == [T0 + d * DAY + 3600 for d in (8, 9)]  # two days of minutes
        assert sum(engine.store.counters(KEY, "sent").values()) == 10.0
    finally:
        engine.close()
