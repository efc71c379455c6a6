"""Notifications against a real SMTP server and a real HTTP server on loopback.

The servers are small stdlib ones written here: an SMTP server on
socketserver that records each transaction and can be told to refuse, and an
http.server that records each POST and answers from a script of statuses.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from extrusion import config as configmod
from extrusion.config import Notify
from extrusion.notify import channels_from_config
from extrusion.notify.channels import EmailChannel, WebhookChannel, redact
from extrusion.notify.notifier import Notifier, wanted
from extrusion.report.model import Report
from extrusion.scoring.events import State, StateChange
from extrusion_dev.sample import classic_scenario

from .conftest import free_port
from .helpers import wait_for

ABUSE = ("abuse@isp.example", "noc@isp.example")
T0 = 1_179_571_635.0  # 2007-05-19 10:47:15 UTC


# --- a tiny SMTP server --------------------------------------------------------------------


@dataclass
class Transaction:
    mail_from: str
    rcpt_to: list[str]
    data: bytes

    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class SMTPScript:
    """What the server answers; each deque is consumed one reply per use, then defaults."""

    greeting: deque[str] = field(default_factory=deque)
    rcpt: deque[str] = field(default_factory=deque)
    data: deque[str] = field(default_factory=deque)
    stall: threading.Event | None = None  # hold every session until set
    connected: threading.Event = field(default_factory=threading.Event)


class _SMTPHandler(socketserver.StreamRequestHandler):
    server: SMTPServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        script = self.server.script
        script.connected.set()
        if script.stall is not None:
            script.stall.wait(30)
        greeting = script.greeting.popleft() if script.greeting else "220 test.example ESMTP"
        self.reply(greeting)
        if not greeting.startswith("2"):
            return
        mail_from, rcpts = "", []
        while line := self.rfile.readline(65536):
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd[:4].upper()
            if verb == "EHLO":
                self.reply("250-test.example")
                self.reply("250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 test.example")
            elif verb == "MAIL":
                mail_from, rcpts = cmd[10:].split()[0].strip("<>"), []
                self.reply("250 ok")
            elif verb == "RCPT":
                answer = script.rcpt.popleft() if script.rcpt else "250 ok"
                if answer.startswith("2"):
                    rcpts.append(cmd[8:].strip().strip("<>"))
                self.reply(answer)
            elif verb == "DATA":
                self.reply("354 go ahead")
                body = bytearray()
                while (chunk := self.rfile.readline(65536)) not in (b".\r\n", b""):
                    body += chunk[1:] if chunk.startswith(b"..") else chunk
                answer = script.data.popleft() if script.data else "250 queued"
                if answer.startswith("2"):
                    self.server.received.append(Transaction(mail_from, rcpts, bytes(body)))
                self.reply(answer)
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


class SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        self.script = SMTPScript()
        self.received: list[Transaction] = []
        super().__init__(("127.0.0.1", port), _SMTPHandler)
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self.script.stall is not None:
            self.script.stall.set()
        self.shutdown()
        self.server_close()
        self._thread.join(5)


# --- a tiny webhook receiver ---------------------------------------------------------------


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _HookHandler(BaseHTTPRequestHandler):
    server: HookServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        status = self.server.statuses.popleft() if self.server.statuses else 200
        if status < 300:
            self.server.received.append(Post(self.path, dict(self.headers.items()), body))
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args: Any) -> None:  # keep test output clean
        pass


class HookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.statuses: deque[int] = deque()
        self.received: list[Post] = []
        self.attempts = 0
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hooks/extrusion"
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()
    yield server
    server.stop()


@pytest.fixture
def hook() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.stop()


# --- helpers -------------------------------------------------------------------------------


def change(key: str, new: State = State.THROTTLED, old: State = State.OK, score: float = 25.0,
           who: str = "engine", reason: str = "23 distinct recipients failed within 1 hour",
           at: float = T0) -> StateChange:
    return StateChange(time=at, sender=key, old=old, new=new, score=score, reason=reason,
                       who=who, evidence={"failed": 23})


def settings(**kw: Any) -> Notify:
    base: dict[str, Any] = {
        "collect_seconds": 0.2, "min_interval_seconds": 0.0, "retry_seconds": 0.1,
        "max_attempts": 3, "mail_to": ABUSE, "smtp_timeout": 5.0,
    }
    return Notify(**{**base, **kw})


def email_channel(server: SMTPServer, timeout: float = 5.0) -> EmailChannel:
    return EmailChannel("127.0.0.1", server.port, "extrusion@isp.example", ABUSE, timeout)


def notifier(chs: Sequence[Any], build: Callable[[Sequence[str]], Report] | None = None,
             **kw: Any) -> Notifier:
    return Notifier(settings(**kw), chs, build=build, hostname="smarthost1").start()


# --- tests ---------------------------------------------------------------------------------


def test_only_the_engine_raising_a_sender_into_a_flagged_state_is_news() -> None:
    assert wanted(change("ip:192.0.2.1", State.THROTTLED, State.OK))
    assert wanted(change("ip:192.0.2.1", State.HELD, State.THROTTLED))
    assert wanted(change("ip:192.0.2.1", State.BLOCKED, State.WATCH))
    assert not wanted(change("ip:192.0.2.1", State.WATCH, State.OK))  # not flagged
    assert not wanted(change("ip:192.0.2.1", State.THROTTLED, State.HELD))  # falling back
    assert not wanted(change("ip:192.0.2.1", State.BLOCKED, State.OK, who="alice"))  # operator


def test_an_outbreak_of_500_bots_is_one_mail_and_one_post(
    smtp: SMTPServer, hook: HookServer
) -> None:
    # The window is generous so that a loaded machine still fits the burst in it.
    n = notifier([email_channel(smtp), WebhookChannel(hook.url)], collect_seconds=1.5,
                 min_interval_seconds=60.0)
    with n:
        # Reported from several engine threads at once, as libmilter would.
        def burst(first: int) -> None:
            for i in range(first, first + 125):
                n(change(f"ip:10.0.{i // 256}.{i % 256}", score=20.0 + i % 50))

        threads = [threading.Thread(target=burst, args=(k * 125,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_for("smtp.received and hook.received", lambda: smtp.received and hook.received)
    # Closing sends whatever is still pending at once: a change left out of the
    # first digest would be a second mail and post here.
    assert len(smtp.received) == 1 and len(hook.received) == 1
    assert n.stats["digests"] == 1
    mail = smtp.received[0]
    assert mail.rcpt_to == list(ABUSE) and mail.mail_from == "extrusion@isp.example"
    msg = mail.message()
    assert msg["Subject"] == "[extrusion] 500 senders flagged: 500 throttled"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "extrusion on smarthost1 flagged 500 senders" in text
    summary = [line for line in text.splitlines() if re.match(r"  \S+ \S+  throttled ", line)]
    assert len(summary) == 500 and all(" throttled " in line for line in summary)
    attachment = next(msg.iter_attachments())
    assert attachment.get_filename() == "extrusion-digest.json"
    doc = hook.received[0].json()
    assert doc["kind"] == "extrusion.digest" and len(doc["changes"]) == 500
    assert json.loads(attachment.get_content()) == doc
    # Full evidence only for the highest scores; every change is listed.
    assert len(doc["report"]["senders"]) == 20
    assert doc["changes"][0]["score"] == 69.0
    assert n.stats["digests"] == 1


def test_a_single_sender_gets_its_text_report_by_mail(smtp: SMTPServer) -> None:
    scenario = classic_scenario()

    def build(keys: Sequence[str]) -> Report:
        assert list(keys) == ["sasl:dsl-0047@example.net"]
        return Report(generated_at=T0, until=T0, senders=scenario.senders[:1])

    with notifier([email_channel(smtp)], build=build) as n:
        n(change("sasl:dsl-0047@example.net", State.HELD, State.THROTTLED, 57.5,
                 reason="15 distinct recipients failed within 1 hour"))
        wait_for("smtp.received", lambda: smtp.received)
    msg = smtp.received[0].message()
    assert msg["Subject"] == (
        "[extrusion] sasl:dsl-0047@example.net held (score 57.5): "
        "15 distinct recipients failed within 1 hour"
    )
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert "=== sasl:dsl-0047@example.net customer=example-dsl state=held" in text
    assert "2007-05-19 10:50:22 985eubg@msa.hinet.net Size=2206\n!!! cy-i88222@ms.cy.edw.tw" in text
    assert "and 31 more valid destinations" in text


def test_the_listener_returns_while_the_relay_hangs(smtp: SMTPServer) -> None:
    smtp.script.stall = threading.Event()
    n = notifier([email_channel(smtp, timeout=20.0)], collect_seconds=0.0)
    try:
        n(change("ip:192.0.2.1"))
        assert smtp.script.connected.wait(5), "the worker never reached the relay"
        # The worker is now stuck in the relay's greeting; the engine must not be.
        calls = threading.Thread(
            target=lambda: [n(change(f"ip:192.0.2.{i}")) for i in range(2, 200)]
        )
        calls.start()
        calls.join(5)
        assert not calls.is_alive(), "the listener blocked on the relay"
        assert not smtp.script.stall.is_set()
        smtp.script.stall.set()
        # Released, the relay gets the first digest and then the 198 collected meanwhile.
        wait_for("len(smtp.received) == 2", lambda: len(smtp.received) == 2)
    finally:
        n.close()
    assert "198 senders flagged" in smtp.received[1].message()["Subject"]


def test_changes_after_a_digest_wait_for_the_interval_and_go_together(
    smtp: SMTPServer,
) -> None:
    with notifier([email_channel(smtp)], collect_seconds=0.05, min_interval_seconds=1.0) as n:
        n(change("ip:192.0.2.1"))
        wait_for("len(smtp.received) == 1", lambda: len(smtp.received) == 1)
        first_at = time.monotonic()
        n(change("ip:192.0.2.2"))
        n(change("ip:192.0.2.3", State.HELD, State.THROTTLED))
        wait_for("len(smtp.received) == 2", lambda: len(smtp.received) == 2)
        assert time.monotonic() - first_at > 0.8
    second = smtp.received[1].message()["Subject"]
    assert second == "[extrusion] 2 senders flagged: 1 held, 1 throttled"


def test_a_sender_climbing_within_the_window_is_one_line_with_its_latest_state(
    smtp: SMTPServer,
) -> None:
    with notifier([email_channel(smtp)], collect_seconds=0.3) as n:
        n(change("ip:192.0.2.9", State.THROTTLED, State.OK, 21.0))
        n(change("ip:192.0.2.9", State.HELD, State.THROTTLED, 45.0))
        wait_for("smtp.received", lambda: smtp.received)
    assert smtp.received[0].message()["Subject"].startswith(
        "[extrusion] ip:192.0.2.9 held (score 45.0)"
    )


def test_nothing_is_sent_for_changes_that_are_not_news(smtp: SMTPServer) -> None:
    n = notifier([email_channel(smtp)], collect_seconds=0.0)
    n(change("ip:192.0.2.1", State.WATCH, State.OK))
    n(change("ip:192.0.2.2", State.THROTTLED, State.HELD))
    n(change("ip:192.0.2.3", State.BLOCKED, State.OK, who="alice"))
    n.close()  # close sends whatever is pending: here nothing
    assert smtp.received == [] and n.stats["digests"] == 0


def test_close_sends_what_is_pending_without_waiting(smtp: SMTPServer) -> None:
    n = notifier([email_channel(smtp)], collect_seconds=3600.0)
    n(change("ip:192.0.2.1"))
    n.close()
    assert len(smtp.received) == 1


def test_relay_down_then_back_up_gets_the_digest_on_a_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens here yet: connection refused, a real outage
    channel = EmailChannel("127.0.0.1", port, "extrusion@isp.example", ABUSE, 5.0)
    server: SMTPServer | None = None
    n = notifier([channel], collect_seconds=0.0, retry_seconds=0.3, max_attempts=10)
    try:
        with caplog.at_level(logging.WARNING, logger="extrusion.notify"):
            n(change("ip:192.0.2.1"))
            wait_for("n.stats['email.failed'] >= 1", lambda: n.stats["email.failed"] >= 1)
            server = SMTPServer(port)
            wait_for("the retried digest received",
                     lambda: server is not None and len(server.received) == 1)
    finally:
        n.close()
        if server is not None:
            server.stop()
    assert n.stats["email.sent"] == 1
    assert any("retrying in" in r.getMessage() for r in caplog.records)


def test_transient_refusal_is_retried_and_permanent_refusal_is_given_up_and_logged(
    smtp: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp.script.greeting.append("421 4.3.2 busy, try later")
    with notifier([email_channel(smtp)]) as n:
        n(change("ip:192.0.2.1"))
        wait_for("len(smtp.received) == 1", lambda: len(smtp.received) == 1)
    assert (n.stats["email.failed"], n.stats["email.sent"]) == (1, 1)

    smtp.script.rcpt.extend(["550 5.1.1 no such mailbox"] * 2)
    with caplog.at_level(logging.ERROR, logger="extrusion.notify"), notifier(
        [email_channel(smtp)]
    ) as n:
        n(change("ip:192.0.2.66"))
        wait_for("n.stats['email.given_up'] == 1", lambda: n.stats["email.given_up"] == 1)
    # Closing makes a last try of anything still queued for a retry (the script
    # refuses it again): one failure means no retry followed the permanent refusal.
    assert n.stats["email.failed"] == 1 and len(smtp.received) == 1
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "550" in logged and "ip:192.0.2.66" in logged


def test_webhook_is_retried_after_a_server_error_and_carries_the_token(
    hook: HookServer, caplog: pytest.LogCaptureFixture
) -> None:
    hook.statuses.extend([503])
    token = "s3cr3t-token-value"
    with caplog.at_level(logging.DEBUG, logger="extrusion.notify"), notifier(
        [WebhookChannel(hook.url, token=token)]
    ) as n:
        n(change("ip:192.0.2.1"))
        wait_for("hook.received", lambda: hook.received)
    post = hook.received[0]
    assert post.path == "/hooks/extrusion"
    assert post.headers["Authorization"] == f"Bearer {token}"
    assert post.headers["Content-Type"].startswith("application/json")
    assert post.json()["changes"][0]["sender"] == "ip:192.0.2.1"
    assert n.stats["webhook.failed"] == 1 and n.stats["webhook.sent"] == 1
    assert token not in caplog.text


def test_webhook_client_error_is_not_retried(hook: HookServer) -> None:
    hook.statuses.extend([400, 400])
    with notifier([WebhookChannel(hook.url)]) as n:
        n(change("ip:192.0.2.1"))
        wait_for("n.stats['webhook.given_up'] == 1", lambda: n.stats["webhook.given_up"] == 1)
    # As above: a queued retry would be tried once more on close, and refused again.
    assert n.stats["webhook.failed"] == 1 and hook.received == []


def test_one_failing_channel_does_not_hold_back_the_other(hook: HookServer) -> None:
    dead = EmailChannel("127.0.0.1", free_port(), "extrusion@isp.example", ABUSE, 2.0)
    with notifier([dead, WebhookChannel(hook.url)], retry_seconds=30.0) as n:
        n(change("ip:192.0.2.1"))
        wait_for("hook.received", lambda: hook.received)
        assert n.stats["email.failed"] == 1


def test_store_outage_still_sends_the_changes_alone(smtp: SMTPServer) -> None:
    def build(_keys: Sequence[str]) -> Report:
        raise ConnectionError("store unavailable: connection refused")

    with notifier([email_channel(smtp)], build=build) as n:
        n(change("ip:192.0.2.1", reason="HELO anomaly: lrhnow.usa.net"))
        wait_for("smtp.received", lambda: smtp.received)
    body = smtp.received[0].message().get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "=== ip:192.0.2.1 customer=- state=throttled score=25.0" in text
    assert "HELO anomaly: lrhnow.usa.net" in text and "failed=23" in text
    assert n.stats["report_failed"] == 1


def test_beyond_max_pending_changes_are_counted_not_kept(smtp: SMTPServer) -> None:
    n = notifier([email_channel(smtp)], collect_seconds=3600.0, max_pending=10)
    for i in range(15):
        n(change(f"ip:192.0.2.{i}"))
    n.close()
    msg = smtp.received[0].message()
    assert msg["Subject"] == "[extrusion] 10 senders flagged: 10 throttled"
    body = msg.get_body(("plain",))
    assert body is not None
    assert "and 5 more changes not kept" in body.get_content()


def test_hostile_sender_key_cannot_inject_mail_headers(smtp: SMTPServer) -> None:
    with notifier([email_channel(smtp)]) as n:
        n(change("sasl:x\r\nBcc: victim@example.com\r\n\r\nforged body"))
        wait_for("smtp.received", lambda: smtp.received)
    mail = smtp.received[0]
    assert mail.rcpt_to == list(ABUSE)
    msg = mail.message()
    assert msg["Bcc"] is None
    assert msg["Subject"].startswith("[extrusion] sasl:x\\r\\nBcc: victim@example.com")


def test_channels_follow_the_config() -> None:
    assert channels_from_config(configmod.from_dict({})) == []
    cfg = configmod.from_dict({"notify": {
        "email_enabled": True, "mail_to": ["abuse@isp.example"], "smtp_port": 2525,
        "webhook_enabled": True, "webhook_url": "https://tickets.example/hook",
    }})
    email_ch, hook_ch = channels_from_config(cfg)
    assert isinstance(email_ch, EmailChannel) and email_ch.port == 2525
    assert isinstance(hook_ch, WebhookChannel) and hook_ch.url == "https://tickets.example/hook"


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        ({"email_enabled": True}, "email_enabled needs at least one address"),
        ({"mail_to": ["not-an-address"]}, "is not a plain mail address"),
        ({"mail_to": ["a@b.example\r\nBcc: x@y"]}, "is not a plain mail address"),
        ({"webhook_enabled": True, "webhook_url": "ftp://x"}, "needs an http:// or https://"),
        ({"smtp_port": 70000}, "not a TCP port"),
        ({"collect_seconds": -1}, "must not be negative"),
    ],
)
def test_bad_notify_config_is_one_clear_error(table: dict[str, Any], reason: str) -> None:
    with pytest.raises(configmod.ConfigError, match=reason) as err:
        configmod.from_dict({"notify": table})
    assert err.value.key.startswith("notify")


def test_webhook_urls_are_shown_without_credentials() -> None:
    assert redact("https://user:pw@hooks.example:8443/p?token=abc") == (
        "https://hooks.example:8443/p"
    )
