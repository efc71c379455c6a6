"""The store made really unavailable (PostgreSQL refusing connections), then restored.

At start with the database refusing: the configured default action answers,
/healthz says degraded, and the daemon recovers by itself when the database
returns. Mid-run: answers continue from memory, writes are spooled, and once
the database is back they arrive — nothing lost.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from twisted.internet import defer

from extrusion.config import Config
from extrusion.scoring.engine import open_engine
from extrusion.scoring.events import OperatorAction, OperatorVerb
from extrusion.scoring.store import Store

from .conftest import PG_ADMIN_URL, pg_admin
from .helpers import missing
from .test_api import http
from .test_policyd_server import ServerCase
from .test_policyd_support import ALICE, make_config, read_replies, request

DEFAULT = "DEFER_IF_PERMIT 4.3.0 policy store unavailable, try again later"
BOT = "ip:192.0.2.66"


class Database:
    """A PostgreSQL database of our own that we can close to connections and reopen."""

    def __init__(self) -> None:
        self.name = f"extrusion_outage_{uuid.uuid4().hex[:10]}"
        self.admin = pg_admin()
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"

    def _sql(self, text: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(text))

    def create(self) -> None:
        self._sql(f'CREATE DATABASE "{self.name}"')

    def close_doors(self) -> None:
        """New connections refused, existing ones killed: the store is gone for the daemon."""
        self._sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self._sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )

    def open_doors(self) -> None:
        self._sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def drop(self) -> None:
        self.open_doors()
        self._sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.dispose()


@pytest.fixture
def database() -> Iterator[Database]:
    db = Database()
    try:
        db.create()
    except sa.exc.SQLAlchemyError as exc:
        db.admin.dispose()
        missing(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.__class__.__name__}")
    yield db
    db.drop()


def ask(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return read_replies(s, 1)[0]


class OutageCase(ServerCase):
    doors_closed_at_start: ClassVar[bool] = False

    @pytest.fixture(autouse=True)
    def _database(self, database: Database) -> None:
        self.db = database

    def config(self) -> Config:
        cfg = make_config(
            self.tmp, store_url=self.db.url,
            policyd={"default_action": DEFAULT, "flush_seconds": 0.2},
            store={"refresh_seconds": 0.2},
        )
        # A sender blocked by an operator earlier, as the store remembers it.
        seed = open_engine(cfg)
        seed.operator(OperatorAction(time.time(), BOT, OperatorVerb.BLOCK, "noc", "bot"))
        seed.close()
        if self.doors_closed_at_start:
            self.db.close_doors()
        return cfg

    @defer.inlineCallbacks
    def until(self, what: str, probe: Any, timeout: float = 20.0, every: float = 0.1) -> Any:
        return (yield super().until(what, probe, timeout, every))

    def health(self) -> tuple[int, bytes]:
        assert self.svc.api_listener is not None
        code, _, body = http(self.svc.api_listener.tcp_port, "GET", "/healthz", token=None)
        return code, body


class StoreDownAtStart(OutageCase):
    doors_closed_at_start = True

    @defer.inlineCallbacks
    def test_default_action_while_down_then_recovers_by_itself(self) -> Any:
        bot = request(sasl_username="", client_address="192.0.2.66")
        got = yield self.in_thread(ask, self.port, bot)
        self.assertEqual(got, f"action={DEFAULT}\n\n".encode())
        got = yield self.in_thread(ask, self.port, request())
        self.assertEqual(got, f"action={DEFAULT}\n\n".encode())
        code, body = yield self.in_thread(self.health)
        self.assertEqual(code, 503)
        self.assertIn(b'"judging": false', body)
        # Still down a while later: still the default, never a guess.
        yield self.in_thread(time.sleep, 1.0)
        got = yield self.in_thread(ask, self.port, bot)
        self.assertEqual(got, f"action={DEFAULT}\n\n".encode())

        self.db.open_doors()
        yield self.until("the engine to judge", lambda: ask(self.port, bot).startswith(
            b"action=REJECT 5.7.1 "))
        got = yield self.in_thread(ask, self.port, request())
        self.assertEqual(got, b"action=DUNNO\n\n")
        code, _ = yield self.until("healthz ok", lambda: self.health()[0] == 200 and (200, 0))
        self.assertEqual(code, 200)
        errors = self.svc.metrics.registry.get_sample_value(
            "extrusion_store_errors_total", {"operation": "sync"})
        self.assertGreaterEqual(errors or 0, 1)


class StoreDownMidRun(OutageCase):
    @defer.inlineCallbacks
    def test_answers_from_memory_spools_and_catches_up(self) -> Any:
        bot = request(sasl_username="", client_address="192.0.2.66")
        got = yield self.in_thread(ask, self.port, bot)
        self.assertTrue(got.startswith(b"action=REJECT "), got)

        self.db.close_doors()
        yield self.until("healthz to notice", lambda: self.health()[0] == 503)
        # Decisions keep coming from memory: the bot stays refused, others flow.
        got = yield self.in_thread(ask, self.port, bot)
        self.assertTrue(got.startswith(b"action=REJECT "), got)
        got = yield self.in_thread(ask, self.port, request())
        self.assertEqual(got, b"action=DUNNO\n\n")
        # An operator's decision during the outage takes effect at once...
        assert self.svc.api_listener is not None
        code, _, _ = yield self.in_thread(
            http, self.svc.api_listener.tcp_port, "POST", f"/senders/sasl:{ALICE}/hold",
            {"reason": "during the outage", "who": "noc"}, token=None)
        self.assertEqual(code, 200)
        got = yield self.in_thread(ask, self.port, request("END-OF-MESSAGE"))
        self.assertTrue(got.startswith(b"action=HOLD "), got)
        # ...and reading the store through the API says it is unavailable.
        code, _, body = yield self.in_thread(
            http, self.svc.api_listener.tcp_port, "GET", f"/senders/{BOT}", token=None)
        self.assertEqual(code, 503, body)

        self.db.open_doors()
        yield self.until("healthz ok", lambda: self.health()[0] == 200)

        def stored() -> Any:
            store = Store(self.cfg.store.url, create=False)
            try:
                row = store.sender(f"sasl:{ALICE}")
                return row is not None and row.state == "held" and row
            finally:
                store.close()

        row = yield self.until("the spooled hold to reach the store", stored)
        self.assertEqual(row.pinned_reason, "during the outage")
