"""Notifications wired to the real engine and store: an outbreak reaches the abuse desk's mailbox
with the evidence read back from the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extrusion.config import Config, from_dict
from extrusion.notify import attach, from_config
from extrusion.report.load import notification_builder
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Outcome, State, StateChange, Status, Submission
from extrusion.scoring.store import Store

from . import helpers
from .helpers import Clock, wait_for
from .test_notify import SMTPServer

BOT = "ip:192.0.2.66"
UNKNOWN = "550 5.1.1 <{r}>: Recipient address rejected: User unknown"


def config(store_url: str, tmp_path: Path, smtp_port: int, **notify: Any) -> Config:
    return helpers.config(
        tmp_path, store_url, hostname="smarthost1",
        notify={"email_enabled": True, "smtp_port": smtp_port,
                "mail_to": ["abuse@isp.example"], "collect_seconds": 3.0,
                "min_interval_seconds": 0.0, **notify},
    )


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()
    yield server
    server.stop()


def outbreak(engine: Engine, clock: Clock, n: int) -> None:
    """`n` messages to invented addresses from one bot, each bouncing as unknown user."""
    for i in range(n):
        clock.t += 10.0
        rcpt = f"nobody{i}@example.org"
        qid = f"Q{i:06X}"
        engine.submission(Submission(time=clock.t, sender=BOT, queue_id=qid,
                                     envelope_from=f"x{i}@spoofed.example", recipients=(rcpt,),
                                     size=2206, client_addr="192.0.2.66"))
        engine.outcome(Outcome(time=clock.t + 1, queue_id=qid, recipient=rcpt,
                               status=Status.BOUNCED, dsn="5.1.1", reply=UNKNOWN.format(r=rcpt)))


@pytest.mark.parametrize("wiring", ["attach", "from_config"])
def test_an_outbreak_is_mailed_with_its_evidence_from_the_store(
    store_url: str, tmp_path: Path, smtp: SMTPServer, wiring: str
) -> None:
    cfg = config(store_url, tmp_path, smtp.port)
    clock = Clock(time.time() - 3600)
    store = Store(store_url)
    engine = Engine(cfg, store, clock)
    heard: list[StateChange] = []
    engine.add_listener(heard.append)
    if wiring == "attach":
        notifier = attach(engine, cfg, build=notification_builder(
            store, half_life=cfg.scoring.half_life_seconds))
    else:  # as policyd hands listeners to its EngineService
        notifier = from_config(cfg, store=lambda: engine.store)
        assert notifier is not None
        engine.add_listener(notifier)
    assert notifier is not None
    try:
        outbreak(engine, clock, 30)
        engine.flush()  # the evidence is in the store before the digest is built
        wait_for("smtp.received", lambda: smtp.received, timeout=20)
        time.sleep(0.3)
    finally:
        notifier.close()
        engine.close()
        store.close()
    assert any(ch.new.rank >= State.THROTTLED.rank for ch in heard)
    assert len(smtp.received) == 1  # watch -> throttled -> held is one mail
    msg = smtp.received[0].message()
    assert msg["Subject"].startswith(f"[extrusion] {BOT} ")
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert "extrusion on smarthost1 flagged 1 sender" in text
    assert f"=== {BOT} customer=- state=" in text
    # The classic listing, read back from the store: the bot's latest messages.
    assert "Size=2206\n!!! nobody29@example.org\n" in text
    assert "and 20 more messages not listed" in text
    doc = json.loads(next(msg.iter_attachments()).get_content())
    (sender,) = doc["report"]["senders"]
    assert sender["counts"]["failed"] == 30 and len(sender["messages"]) == 10
    assert sender["messages"][-1]["recipients"][0]["dsn"] == "5.1.1"


def test_before_the_store_is_open_the_changes_go_out_alone(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    cfg = config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, smtp.port, collect_seconds=0.0)
    notifier = from_config(cfg, store=lambda: None)
    assert notifier is not None
    notifier(StateChange(time=time.time(), sender=BOT, old=State.OK, new=State.HELD,
                         score=45.0, reason="too many delivery failures"))
    notifier.close()
    body = smtp.received[0].message().get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert f"=== {BOT} customer=- state=held score=45.0" in text
    assert notifier.stats["report_failed"] == 1


def test_nothing_is_attached_when_both_channels_are_off(store_url: str, tmp_path: Path) -> None:
    cfg = from_dict({"store": {"url": store_url, "spool_dir": str(tmp_path / "spool")}})
    store = Store(store_url)
    engine = Engine(cfg, store, Clock(time.time()))
    try:
        assert attach(engine, cfg) is None
        assert from_config(cfg, store=lambda: store) is None
    finally:
        engine.close()
        store.close()
