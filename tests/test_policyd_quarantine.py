"""A row the store refuses does not degrade the daemon: /healthz stays ok, the metric counts it.

Before, a batch refused for a value ("value too long") was spooled and
replayed first forever, and /healthz flipped between degraded and ok.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer

from extrusion.config import Config
from extrusion.scoring.spool import Spool

from .conftest import _reset_postgres
from .test_api import http
from .test_policyd_server import ServerCase
from .test_policyd_support import make_config
from .test_store_bounds import refused_batch, stored_recipients


class RefusedRowOnSQLite(ServerCase):
    store_url: str | None = None

    def config(self) -> Config:
        cfg = make_config(self.tmp, store_url=self.store_url)
        # Waiting from before a restart; recent, so that pruning old rows leaves it be.
        Spool(cfg.store.spool_dir).write(refused_batch(10, time.time()))
        return cfg

    def api(self, path: str) -> tuple[int, bytes]:
        assert self.svc.api_listener is not None
        code, _, body = http(self.svc.api_listener.tcp_port, "GET", path, token=None)
        return code, body

    @defer.inlineCallbacks
    def test_healthz_stays_ok_and_the_metric_counts_the_row(self) -> Any:
        yield self.until("the spool to drain", lambda: len(self.engine.spool) == 0)
        self.assertEqual(stored_recipients(self.engine.store), 10)
        codes = []
        for _ in range(8):  # several sync rounds (flush_seconds = 0.2)
            code, _ = yield self.in_thread(self.api, "/healthz")
            codes.append(code)
            yield self.in_thread(time.sleep, 0.15)
        self.assertEqual(codes, [200] * 8)
        _, metrics = yield self.until(
            "the metric", lambda: (m := self.api("/metrics"))[1].count(
                b"extrusion_store_quarantined_rows_total 1.0") and m)
        self.assertIn(b"extrusion_store_quarantined_rows_total 1.0", metrics)


class RefusedRowOnPostgreSQL(RefusedRowOnSQLite):
    @pytest.fixture(autouse=True)
    def _postgres(self, pg_database: str) -> Iterator[None]:
        self.store_url = pg_database
        yield
        _reset_postgres(pg_database)
