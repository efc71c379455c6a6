"""Three hosts on one store, one bot: the abuse desk gets one notification, not three."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from extrusion.notify.channels import WebhookChannel
from extrusion.notify.claims import store_claim
from extrusion.notify.notifier import Notifier
from extrusion.scoring.events import State
from extrusion.scoring.store import Store

from .helpers import wait_for
from .test_notify import HookServer, change, settings
from .test_store_cluster import BOT, HOSTS, T0


@pytest.fixture
def hook() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.stop()


def changed(hook: HookServer) -> list[tuple[str, str]]:
    return sorted((c["sender"], c["new"]) for r in hook.received for c in r.json()["changes"])


def hosts(store: Store | None, hook: HookServer, seconds: float = 3600.0) -> list[Notifier]:
    return [Notifier(settings(collect_seconds=0.1), [WebhookChannel(hook.url)], hostname=h,
                     claim=store_claim(lambda: store, h, seconds)).start() for h in HOSTS]


def test_one_bot_seen_by_three_hosts_is_one_notification(store_url: str,
                                                         hook: HookServer) -> None:
    with Store(store_url) as store:
        notifiers = hosts(store, hook)
        try:
            # Each host saw the bot rise, a moment apart (its own change, or the store's).
            for i, n in enumerate(notifiers):
                n(change(BOT, State.THROTTLED, at=T0 + i * 0.4))
                n(change("ip:192.0.2.77", State.HELD, State.THROTTLED, at=T0 + i))
            wait_for("four claimed elsewhere",
                     lambda: sum(n.stats["claimed_elsewhere"] for n in notifiers) == 4)
            wait_for("len(changed(hook)) == 2", lambda: len(changed(hook)) == 2)
            time.sleep(0.3)  # a duplicate would have been posted by now
        finally:
            for n in notifiers:
                n.close()
    assert changed(hook) == [(BOT, "throttled"), ("ip:192.0.2.77", "held")]


def test_a_new_rise_after_the_claim_window_is_news_again(store_url: str,
                                                         hook: HookServer) -> None:
    with Store(store_url) as store:
        notifiers = hosts(store, hook, seconds=600.0)
        try:
            notifiers[0](change(BOT, State.THROTTLED, at=T0))
            wait_for("len(hook.received) == 1", lambda: len(hook.received) == 1)
            notifiers[1](change(BOT, State.THROTTLED, at=T0 + 60))  # the same event, late
            wait_for("the late one claimed elsewhere",
                     lambda: notifiers[1].stats["claimed_elsewhere"] == 1)
            notifiers[2](change(BOT, State.THROTTLED, at=T0 + 3600))  # throttled again
            wait_for("len(hook.received) == 2", lambda: len(hook.received) == 2)
            notifiers[0](change(BOT, State.THROTTLED, at=T0 + 7200))  # and again, first host
            wait_for("len(hook.received) == 3", lambda: len(hook.received) == 3)
        finally:
            for n in notifiers:
                n.close()
    assert [r.json()["changes"][0]["sender"] for r in hook.received] == [BOT] * 3


def test_without_the_store_every_host_sends(hook: HookServer) -> None:
    notifiers = hosts(None, hook)
    try:
        for n in notifiers:
            n(change(BOT, State.THROTTLED))
        wait_for("len(hook.received) == 3", lambda: len(hook.received) == 3)
    finally:
        for n in notifiers:
            n.close()


def test_a_store_that_cannot_be_asked_sends_everything(hook: HookServer) -> None:
    store = Store("postgresql+psycopg://nobody@127.0.0.1:1/none", create=False)
    try:
        notifiers = hosts(store, hook)
        try:
            for n in notifiers:
                n(change(BOT, State.THROTTLED))
            wait_for("len(hook.received) == 3", lambda: len(hook.received) == 3)
        finally:
            for n in notifiers:
                n.close()
    finally:
        store.close()
