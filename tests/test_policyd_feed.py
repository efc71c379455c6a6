"""The live outcome feed: bounces logged by the MTA move the sender's state within seconds.

With the real Postfix: a bot sends to dead addresses, the remote side refuses
them, Postfix logs the bounces, the daemon follows the log, and the very next
policy answer for that bot is no longer DUNNO. Over syslog: the same lines as
datagrams to the daemon's UDP endpoint.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from twisted.internet import defer

from extrusion.config import Config

from .conftest import free_port
from .postfix_harness import PostfixInstance
from .test_api import http
from .test_notify import HookServer
from .test_policyd_server import ServerCase
from .test_policyd_support import make_config, read_replies, request

BOT_ADDR = "127.0.0.6"
BOT = f"ip:{BOT_ADDR}"


def ask(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return read_replies(s, 1)[0]


def ask_many(port: int, data: bytes, n: int) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data * n)
        return read_replies(s, n)


class FeedCase(ServerCase):
    def sender(self, key: str) -> dict[str, Any] | None:
        assert self.svc.api_listener is not None
        self.engine.flush()
        code, _, raw = http(self.svc.api_listener.tcp_port, "GET", f"/senders/{key}",
                            token=None)
        return json.loads(raw) if code == 200 else None

    def diagnostics(self) -> str:
        feed = getattr(self.svc.feed, "feed", None)
        return f"; feed {feed.stats if feed is not None else None}"


class PostfixOutbreak(FeedCase):
    @pytest.fixture(autouse=True)
    def _postfix(self, postfix: PostfixInstance) -> None:
        self.postfix = postfix

    def config(self) -> Config:
        pf = self.postfix
        return make_config(
            self.tmp,
            policyd={"listen": f"tcp:{pf.policy_port}:interface=127.0.0.1"},
            maillog={"source": "file", "path": str(pf.maillog), "poll_seconds": 0.2,
                     "submission_wait_seconds": 1.0},
        )

    def outbreak(self) -> float:
        """One message to 30 dead recipients: 30 distinct failures.

        In one transaction, so that every recipient is accepted before the first
        bounce is in the log. Sent as six messages, the feed could throttle the
        bot on the first ones' bounces before the last was queued (one run in six
        on a loaded machine)."""
        rcpts = [f"unknown{i}x{j}@remote.test" for i in range(6) for j in range(5)]
        result = self.postfix.send("bot@customer.example", rcpts, source=BOT_ADDR)
        assert result.queue_id and len(result.accepted) == 30, result
        return time.monotonic()

    @defer.inlineCallbacks
    def test_bounces_in_the_log_throttle_the_bot_within_seconds(self) -> Any:
        got = yield self.in_thread(ask, self.port, request(sasl_username="",
                                                           client_address=BOT_ADDR))
        self.assertEqual(got, b"action=DUNNO\n\n")
        sent = yield self.in_thread(self.outbreak)
        flagged = yield self.until(
            "the bot to be flagged",
            lambda: (s := self.sender(BOT)) is not None
            and s["state"] in ("throttled", "held", "blocked") and s,
        )
        self.assertLess(time.monotonic() - sent, 20)
        self.assertIn("failed_recipients", json.dumps(flagged["findings"]))
        got = yield self.in_thread(ask, self.port, request(sasl_username="",
                                                           client_address=BOT_ADDR))
        self.assertFalse(got.startswith(b"action=DUNNO"), got)
        # Another customer of the same smarthost is untouched.
        got = yield self.in_thread(ask, self.port, request(sasl_username="",
                                                           client_address="127.0.0.7"))
        self.assertEqual(got, b"action=DUNNO\n\n")


def syslog_lines(host: str, client: str, n_messages: int, rcpts: int) -> list[str]:
    """Postfix's own lines for messages whose every recipient bounces (RFC 3164)."""
    now = datetime.now()
    stamp = f"{now:%b} {now.day:2d} {now:%H:%M:%S}"
    out = []
    for i in range(n_messages):
        qid = f"4B{i:03d}2148C"
        out += [
            f"<22>{stamp} {host} postfix/smtpd[811]: {qid}: client=pc66[{client}]",
            f"<22>{stamp} {host} postfix/cleanup[812]: {qid}: "
            f"message-id=<{i}.bot@customer.example>",
            f"<22>{stamp} {host} postfix/qmgr[813]: {qid}: from=<bot@customer.example>, "
            f"size=900, nrcpt={rcpts} (queue active)",
        ]
        for j in range(rcpts):
            rcpt = f"dead{i}x{j}@remote.example"
            out.append(
                f"<22>{stamp} {host} postfix/smtp[814]: {qid}: to=<{rcpt}>, "
                "relay=mx.remote.example[198.51.100.25]:25, delay=0.4, "
                "delays=0.1/0/0.2/0.1, dsn=5.1.1, status=bounced (host "
                "mx.remote.example[198.51.100.25] said: 550 5.1.1 <"
                f"{rcpt}>: Recipient address rejected: User unknown (in reply to RCPT TO "
                "command))"
            )
        out.append(f"<22>{stamp} {host} postfix/qmgr[813]: {qid}: removed")
    return out


class SyslogOutbreak(FeedCase):
    def config(self) -> Config:
        self.syslog_port = free_port()
        return make_config(
            self.tmp,
            maillog={"source": "syslog",
                     "syslog_listen": f"udp:{self.syslog_port}:interface=127.0.0.1",
                     "submission_wait_seconds": 1.0},
        )

    @defer.inlineCallbacks
    def test_bounces_over_syslog_throttle_the_bot(self) -> Any:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for line in syslog_lines("mta1", "192.0.2.77", 6, 5):
                udp.sendto(line.encode(), ("127.0.0.1", self.syslog_port))
                time.sleep(0.001)  # loopback UDP drops what a burst overflows
        flagged = yield self.until(
            "the bot to be flagged",
            lambda: (s := self.sender("ip:192.0.2.77")) is not None
            and s["state"] in ("throttled", "held", "blocked") and s,
        )
        self.assertIn(flagged["state"], ("throttled", "held", "blocked"))
        # Throttled means the tight [limits.throttled] budget (20 recipients an hour).
        answers = yield self.in_thread(
            ask_many, self.port, request(sasl_username="", client_address="192.0.2.77"), 21)
        self.assertNotEqual(answers[-1], b"action=DUNNO\n\n")
        self.assertLessEqual(answers.count(b"action=DUNNO\n\n"), 20)
        reg = self.svc.metrics.registry
        read = yield self.until(
            "the line counters",
            lambda: reg.get_sample_value("extrusion_maillog_lines_total", {"result": "read"}),
        )
        self.assertEqual(read, 6 * 9)


class SyslogOutbreakNotifies(FeedCase):
    """The daemon tells the abuse desk: one webhook digest naming the bot, with evidence."""

    @pytest.fixture(autouse=True)
    def _hook(self) -> Iterator[None]:
        self.hook = HookServer()
        yield
        self.hook.stop()

    def config(self) -> Config:
        self.syslog_port = free_port()
        return make_config(
            self.tmp,
            maillog={"source": "syslog",
                     "syslog_listen": f"udp:{self.syslog_port}:interface=127.0.0.1",
                     "submission_wait_seconds": 1.0},
            notify={"webhook_enabled": True, "webhook_url": self.hook.url,
                    "collect_seconds": 0.5, "min_interval_seconds": 0.5},
        )

    @defer.inlineCallbacks
    def test_a_flagged_bot_is_posted_to_the_webhook(self) -> Any:
        self.assertIsNotNone(self.svc.notifier)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for line in syslog_lines("mta1", "192.0.2.78", 6, 5):
                udp.sendto(line.encode(), ("127.0.0.1", self.syslog_port))
                time.sleep(0.001)
        posts = yield self.until("the webhook digest", lambda: list(self.hook.received))
        self.assertEqual(len(posts), 1)
        body = json.dumps(posts[0].json())
        self.assertIn("ip:192.0.2.78", body)
        self.assertIn("dead0x0@remote.example", body)  # the evidence, read from the store
        self.assertNotIn("127.0.0.7", body)
