"""A hung PostgreSQL never stalls a policy answer, while syslog outcomes keep arriving.

The hang is real: another connection holds `LOCK TABLE names, messages IN ACCESS
EXCLUSIVE MODE`, so the engine's look-up of a message it did not record (an
outcome line whose submission it never saw: its MTA's name id, then its row)
waits on the lock for as long as the test holds it. The feed's worker waits;
the reactor does not. Once the lock goes, every outcome received meanwhile
reaches the engine.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from twisted.internet import defer

from extrusion.config import Config

from .conftest import _reset_postgres, free_port
from .test_policyd_server import ServerCase
from .test_policyd_support import make_config, read_replies, request

N_OUTCOMES = 20


def outcome_lines(n: int, first: int = 0) -> list[bytes]:
    """Bounce lines for queue ids this process never saw submitted (so it asks the store)."""
    now = datetime.now()
    stamp = f"{now:%b} {now.day:2d} {now:%H:%M:%S}"
    return [
        (f"<22>{stamp} mta1 postfix/smtp[814]: 5C{i:03d}2148D: to=<dead{i}@remote.example>, "
         "relay=mx.remote.example[198.51.100.25]:25, delay=0.4, delays=0.1/0/0.2/0.1, "
         "dsn=5.1.1, status=bounced (host mx.remote.example[198.51.100.25] said: 550 5.1.1 "
         "User unknown (in reply to RCPT TO command))").encode()
        for i in range(first, first + n)
    ]


def timed_answer(port: int) -> tuple[float, bytes]:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request())
        got = read_replies(s, 1)
    return time.monotonic() - t0, got[0] if got else b""


class HungPostgres(ServerCase):
    @pytest.fixture(autouse=True)
    def _pg(self, request: pytest.FixtureRequest) -> Iterator[None]:
        self.store_url: str = request.getfixturevalue("pg_database")
        yield
        _reset_postgres(self.store_url)

    def config(self) -> Config:
        self.syslog_port = free_port()
        return make_config(
            self.tmp, self.store_url,
            maillog={"source": "syslog",
                     "syslog_listen": f"udp:{self.syslog_port}:interface=127.0.0.1"},
        )

    def lock_messages(self) -> Any:
        import sqlalchemy

        eng = sqlalchemy.create_engine(self.store_url)
        conn = eng.connect()
        conn.execute(sqlalchemy.text("LOCK TABLE names, messages IN ACCESS EXCLUSIVE MODE"))
        self.addCleanup(eng.dispose)
        self.addCleanup(conn.close)
        return conn

    def waiting_on_lock(self) -> int:
        import sqlalchemy

        eng = sqlalchemy.create_engine(self.store_url)
        try:
            with eng.connect() as conn:
                return int(conn.execute(sqlalchemy.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )).scalar_one())
        finally:
            eng.dispose()

    def handled(self) -> int:
        """Outcomes the engine has taken: sender-less ones wait for their submission."""
        return int(self.engine.status()["unresolved_outcomes"])

    def send(self, lines: list[bytes]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for line in lines:
                udp.sendto(line, ("127.0.0.1", self.syslog_port))
                time.sleep(0.001)  # loopback UDP drops what a burst overflows

    @defer.inlineCallbacks
    def test_policy_answers_within_a_second_while_the_lookup_waits_on_a_lock(self) -> Any:
        lock = yield self.in_thread(self.lock_messages)
        yield self.in_thread(self.send, outcome_lines(N_OUTCOMES))
        # The look-up really is stuck on the lock (not merely slow, not skipped).
        yield self.until("the feed's look-up to wait on the lock", self.waiting_on_lock)
        for _ in range(10):
            took, got = yield self.in_thread(timed_answer, self.port)
            self.assertEqual(got, b"action=DUNNO\n\n")
            self.assertLess(took, 1.0)
        # More outcomes while it hangs: queued, not lost, and still no waiting answer.
        yield self.in_thread(self.send, outcome_lines(5, first=N_OUTCOMES))
        took, got = yield self.in_thread(timed_answer, self.port)
        self.assertEqual(got, b"action=DUNNO\n\n")
        self.assertLess(took, 1.0)
        self.assertGreater(self.svc.feed.waiting, 0)  # type: ignore[union-attr]
        yield self.in_thread(lock.rollback)
        handled = yield self.until(
            "every outcome to reach the engine",
            lambda: (n := self.handled()) >= N_OUTCOMES + 5 and n,
        )
        self.assertEqual(handled, N_OUTCOMES + 5)
        self.assertEqual(self.svc.feed.waiting, 0)  # type: ignore[union-attr]
