"""Operator actions reach the policy daemon under the key traffic has, or are refused.

A running daemon (policy server and operator API on loopback) on each store
backend; `extrusion hold|block` run beside it on the same store, as an
operator would, and the API is called over HTTP.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy
from twisted.internet import defer, reactor, task

from extrusion import config as configmod
from extrusion.cli import main
from extrusion.config import Config
from extrusion.exits import EX_DATAERR, EX_USAGE

from .conftest import _reset_postgres, pg_admin
from .helpers import toml_text
from .test_api import TOKEN, ApiCase, ask_policy
from .test_policyd_support import request

IPV6_CLIENT = "2001:db8::1"
V4_CLIENT = "192.0.2.5"
REFUSED_SECONDS = 1.0  # how long PostgreSQL refuses a starting daemon (StartWhileRefused)


def ask_as(client: str, state: str = "RCPT") -> bytes:
    """A request from an unauthenticated client at `client`."""
    return request(state, client_address=client, sasl_username="", sasl_method="")


class KeysCase(ApiCase):
    backend: ClassVar[str] = "sqlite"

    @pytest.fixture(autouse=True)
    def _store(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
        if self.backend == "sqlite":
            self.store_url = f"sqlite:///{tmp_path / 'extrusion.db'}"
            yield
            return
        self.store_url = request.getfixturevalue("pg_database")
        # The session's database: emptied before as well as after, as `store_url` does,
        # so that no test here starts from what another file's test left in it.
        _reset_postgres(self.store_url)
        yield
        _reset_postgres(self.store_url)

    def config(self) -> Config:
        data: dict[str, Any] = {
            "general": {"hostname": "mta1.test", "log_level": "debug"},
            "store": {"url": self.store_url, "spool_dir": str(self.tmp / "spool"),
                      "refresh_seconds": 0.2},
            "policyd": {"listen": "tcp:0:interface=127.0.0.1", "hold_queued_mail": False,
                        "flush_seconds": 0.2, "engine_retry_seconds": 0.5},
            "api": {"listen": "tcp:0:interface=127.0.0.1", "token": TOKEN},
            "milter": {"enabled": False},
            "customers": [{"name": "acme", "networks": ["10.0.0.0/8"]}],
        }
        self.path = self.tmp / "extrusion.toml"
        self.path.write_text(toml_text(data))
        return configmod.load(self.path)

    def cli(self, *args: str) -> defer.Deferred[Any]:
        return self.in_thread(main, [*args, "--config", str(self.path), "-r", "ticket 7"])

    def answer(self, client: str, state: str = "RCPT") -> defer.Deferred[Any]:
        return self.in_thread(ask_policy, self.port, ask_as(client, state))

    @defer.inlineCallbacks
    def answers(self, client: str, state: str, prefix: bytes) -> Any:
        """Wait until the daemon (refreshing from the store) gives this answer."""

        def probe() -> bool:
            return ask_policy(self.port, ask_as(client, state)).startswith(prefix)

        yield self.until(f"{prefix!r} for {client} at {state}", probe)

    @defer.inlineCallbacks
    def stored(self) -> Any:
        yield self.in_thread(self.engine.flush)
        code, body = yield self.json_call("GET", "/senders")
        self.assertEqual(code, 200)
        return sorted(s["sender"] for s in body["senders"])


class CliTests(KeysCase):
    @defer.inlineCallbacks
    def test_hold_on_a_non_canonical_ipv6_key_holds_that_client(self) -> Any:
        got = yield self.answer(IPV6_CLIENT, "END-OF-MESSAGE")
        self.assertEqual(got, b"action=DUNNO\n\n")
        status = yield self.cli("hold", "ip:2001:DB8::0001")
        self.assertEqual(status, 0)
        yield self.answers(IPV6_CLIENT, "END-OF-MESSAGE", b"action=HOLD ")
        for spelling in ("2001:DB8:0:0:0:0:0:1", "[IPv6:2001:db8::1]"):
            got = yield self.answer(spelling, "END-OF-MESSAGE")
            self.assertTrue(got.startswith(b"action=HOLD "), (spelling, got))
        self.assertEqual((yield self.stored()), ["ip:2001:db8::1"])

    @defer.inlineCallbacks
    def test_block_reaches_the_client_mapped_or_not(self) -> Any:
        status = yield self.cli("block", f"ip:::ffff:{V4_CLIENT}")
        self.assertEqual(status, 0)
        for client in (V4_CLIENT, f"::ffff:{V4_CLIENT}"):
            yield self.answers(client, "RCPT", b"action=REJECT ")
        self.assertEqual((yield self.stored()), [f"ip:{V4_CLIENT}"])

    @defer.inlineCallbacks
    def test_refused_keys_change_no_answer_and_store_nothing(self) -> Any:
        for verb, key, expected in [
            ("hold", "ip:192.0.2.0/24", EX_USAGE),
            ("block", "ip:192.0.2.300", EX_USAGE),
            ("block", "ip:not-an-ip", EX_USAGE),
            ("block", "customer:nobody", EX_DATAERR),
            ("block", "ip:10.0.0.5", EX_DATAERR),  # acme's: counted as customer:acme
        ]:
            status = yield self.cli(verb, key)
            self.assertEqual(status, expected, key)
        self.assertEqual((yield self.stored()), [])  # so `extrusion senders` lists none
        for client in (V4_CLIENT, "192.0.2.255", "10.0.0.5"):
            got = yield self.answer(client)
            self.assertEqual(got, b"action=DUNNO\n\n")


class ApiTests(KeysCase):
    @defer.inlineCallbacks
    def test_hold_over_the_api_is_stored_canonical_and_enforced(self) -> Any:
        code, body = yield self.json_call(
            "POST", "/senders/ip:2001:DB8::0001/hold", {"reason": "check"})
        self.assertEqual((code, body["sender"], body["change"]["new"]), (200, "ip:2001:db8::1",
                                                                       "held"))
        got = yield self.answer(IPV6_CLIENT, "END-OF-MESSAGE")
        self.assertTrue(got.startswith(b"action=HOLD "), got)
        yield self.in_thread(self.engine.flush)
        code, detail = yield self.json_call("GET", "/senders/ip:2001:DB8::1")
        self.assertEqual((code, detail["sender"]), (200, "ip:2001:db8::1"))

    @defer.inlineCallbacks
    def test_refused_keys_are_400_with_a_json_error_and_store_nothing(self) -> Any:
        for verb, key, words in [
            ("hold", "ip:192.0.2.0/24", "[[overrides]]"),
            ("block", "ip:192.0.2.300", "not an IP address"),
            ("block", "ip:not-an-ip", "not an IP address"),
            ("block", "ip:", "names nobody"),
            ("block", "host:192.0.2.5", "not a sender key"),
            ("block", "customer:nobody", "no customer"),
            ("allow", "ip:10.0.0.5", "customer:acme"),
        ]:
            path = f"/senders/{urllib.parse.quote(key, safe=':')}/{verb}"
            code, body = yield self.json_call("POST", path, {"reason": "r"})
            self.assertEqual(code, 400, key)
            self.assertIn(words, body["error"], key)
        self.assertEqual((yield self.stored()), [])
        got = yield self.answer(V4_CLIENT)
        self.assertEqual(got, b"action=DUNNO\n\n")


class CliTestsPostgres(CliTests):
    backend = "postgresql"


class ApiTestsPostgres(ApiTests):
    backend = "postgresql"


def _allow_connections(url: str, allow: bool) -> None:
    """PostgreSQL takes new connections to the database of `url`, or refuses them."""
    name = sqlalchemy.make_url(url).database
    admin = pg_admin()
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(
                f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}'))
    finally:
        admin.dispose()


class StartWhileRefusedTests(KeysCase):
    """The daemon starts while PostgreSQL refuses it (too many clients, a restart): it
    is ready, answers the default action, and judges once a refresh reaches the store.
    The tests above assert answers at once, so set-up waits for that (ApiCase)."""

    backend = "postgresql"

    def setUp(self) -> Any:
        _allow_connections(self.store_url, False)
        self.refused_at_open: bool | None = None
        self.reopen: Any = None
        self.watch = task.LoopingCall(self._reopen_once_open)
        self.watch.start(0.05)
        self.addCleanup(self._open_doors)  # also when set-up fails (no tearDown then)
        return super().setUp()

    def _reopen_once_open(self) -> None:
        svc = getattr(self, "svc", None)
        if svc is None or svc.engines.engine is None:
            return
        self.watch.stop()
        self.refused_at_open = not svc.engines.loaded
        self.reopen = reactor.callLater(REFUSED_SECONDS, self._open_doors)

    def _open_doors(self) -> None:
        if self.watch.running:
            self.watch.stop()
        if self.reopen is not None and self.reopen.active():
            self.reopen.cancel()
        _allow_connections(self.store_url, True)

    def tearDown(self) -> Any:
        self._open_doors()  # before the daemon's last flush
        return super().tearDown()

    @defer.inlineCallbacks
    def test_a_hold_is_enforced_as_soon_as_set_up_is_done(self) -> Any:
        self.assertIs(self.refused_at_open, True)  # its first read of the store failed
        code, _ = yield self.json_call("POST", "/senders/ip:2001:db8::1/hold", {"reason": "r"})
        self.assertEqual(code, 200)
        got = yield self.answer(IPV6_CLIENT, "END-OF-MESSAGE")
        self.assertTrue(got.startswith(b"action=HOLD "), got)
