"""Retention: the daemon deletes evidence older than `[store] retention_days`, keeps the rest."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer

from extrusion.config import Config
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Submission
from extrusion.scoring.store import Store

from .test_policyd_server import ServerCase
from .test_policyd_support import make_config

DAY = 86400.0


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
