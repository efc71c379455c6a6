"""With a real Postfix: policy delegation, the live log feed, and queued mail held and released.

The session's throw-away Postfix (tests/postfix_harness.py) is wired to the
policy port by the shipped snippet; here the daemon listens on that port,
follows that instance's log, and runs postsuper on that instance's queue.
Mail to `grey…@` addresses is deferred by the remote side, so it stays queued.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer

from extrusion.config import Config
from extrusion.policyd.holdqueue import QueueActions
from extrusion.policyd.metrics import Metrics
from extrusion.scoring.events import State, StateChange

from .postfix_harness import PostfixInstance
from .test_api import http
from .test_policyd_server import ServerCase
from .test_policyd_support import make_config

CUSTOMER = "127.0.0.5"  # the customer's address: sender key ip:127.0.0.5
KEY = f"ip:{CUSTOMER}"


class QueuedMailTests(ServerCase):
    @pytest.fixture(autouse=True)
    def _postfix(self, postfix: PostfixInstance) -> None:
        self.postfix = postfix

    def config(self) -> Config:
        pf = self.postfix
        return make_config(
            self.tmp,
            policyd={"listen": f"tcp:{pf.policy_port}:interface=127.0.0.1",
                     "hold_queued_mail": True, "postfix_config_dir": str(pf.config_dir)},
            maillog={"source": "file", "path": str(pf.maillog), "poll_seconds": 0.2,
                     "submission_wait_seconds": 1.0},
        )

    def tearDown(self) -> Any:
        d = super().tearDown()

        def clean(_: Any) -> None:
            for m in self.postfix.queue():
                if m["sender"] == "bot@customer.example":
                    self.postfix.delete(str(m["queue_id"]))

        return d.addCallback(clean)

    def send(self, n: int) -> list[str]:
        ids = []
        for i in range(n):
            result = self.postfix.send("bot@customer.example", [f"grey{i}@remote.test"],
                                       source=CUSTOMER)
            assert result.queue_id, result
            ids.append(result.queue_id)
        return ids

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.svc.api_listener is not None
        code, _, raw = http(self.svc.api_listener.tcp_port, method, path, body, token=None)
        return code, json.loads(raw)

    def diagnostics(self) -> str:
        feed = getattr(self.svc.feed, "feed", None)
        return (f"; feed: {feed.stats if feed is not None else None}; "
                f"queue: {self.postfix.queue()}")

    @defer.inlineCallbacks
    def test_hold_puts_queued_mail_on_hold_and_release_releases_it(self) -> Any:
        queued = yield self.in_thread(self.send, 3)
        # The log feed tells the engine which queue ids are this sender's.
        yield self.until(
            "the feed to record the submissions",
            lambda: set(queued) <= set(self.engine.undelivered_queue_ids(KEY, "mta1.test")),
        )
        code, body = yield self.in_thread(
            self.api, "POST", f"/senders/{KEY}/hold", {"reason": "outbreak", "who": "noc"})
        self.assertEqual((code, body["change"]["new"]), (200, "held"))
        yield self.until("postsuper -h", lambda: set(queued) <= set(self.postfix.held()))

        # New mail from the held sender: Postfix holds it itself on the policy's HOLD.
        [later] = yield self.in_thread(self.send, 1)
        yield self.until("Postfix to hold new mail", lambda: later in self.postfix.held())

        code, body = yield self.in_thread(
            self.api, "POST", f"/senders/{KEY}/release", {"reason": "cleaned", "who": "noc"})
        self.assertEqual((code, body["change"]["new"]), (200, "ok"))
        yield self.until("postsuper -H",
                         lambda: not set([*queued, later]) & set(self.postfix.held()))
        # postsuper has released the mail before its run is written down: wait for
        # the job itself to finish, not for the queue to change.
        queue = self.svc.queue
        assert queue is not None
        yield self.until("the release to be recorded", lambda: not queue.pending)

        # Both queue actions are in the audit trail, with the queue ids.
        yield self.in_thread(self.engine.flush)
        code, detail = yield self.in_thread(self.api, "GET", f"/senders/{KEY}")
        actions = [a for a in detail["audit"] if a["who"] == "postsuper"]
        self.assertEqual([a["evidence"]["queue_action"] for a in actions], ["hold", "release"])
        self.assertTrue(set(queued) <= set(actions[0]["evidence"]["queue_ids"]))
        self.assertTrue(all(a["evidence"]["ok"] for a in actions))
        # postsuper's own summary ends each note, whole (not its line per message).
        self.assertRegex(actions[0]["reason"], r"postsuper: Placed on hold: \d+ messages?$")
        self.assertRegex(actions[1]["reason"], r"postsuper: Released from hold: \d+ messages?$")
        self.assertNotIn(": placed on hold", actions[0]["reason"])
        reg = self.svc.metrics.registry
        self.assertEqual(reg.get_sample_value("extrusion_queue_actions_total",
                                              {"verb": "hold", "result": "ok"}), 1)
        self.assertGreater(reg.get_sample_value("extrusion_maillog_lines_total",
                                                {"result": "parsed"}) or 0, 0)


class Source:
    def __init__(self, engine: Any) -> None:
        self.engine = engine


class IdsEngine:
    """The two engine methods QueueActions uses; the queue ids as a store would list them."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def undelivered_queue_ids(self, sender: str, mta: str = "") -> list[str]:
        return self.ids


def change(old: State, new: State) -> StateChange:
    return StateChange(time.time(), KEY, old, new, 42.0, "test")


def test_a_failing_postsuper_is_reported_not_raised(tmp_path: Path) -> None:
    from twisted.internet import reactor

    metrics = Metrics()
    qa = QueueActions(Source(IdsEngine(["4XyZ1k2ABCz"])), postsuper=str(tmp_path / "nope"),
                      config_dir="", mta="", reactor=reactor, metrics=metrics)
    action = qa.run(change(State.WATCH, State.HELD))
    assert action is not None and not action.ok
    assert "nope" in action.detail
    assert metrics.registry.get_sample_value(
        "extrusion_queue_actions_total", {"verb": "hold", "result": "error"}) == 1


def test_postsuper_gets_only_well_formed_queue_ids_on_stdin(tmp_path: Path) -> None:
    from twisted.internet import reactor

    fake_postsuper = tmp_path / "postsuper"
    seen = tmp_path / "seen"
    fake_postsuper.write_text(f"#!/bin/sh\necho \"$@\" > {seen}\ncat >> {seen}\n")
    fake_postsuper.chmod(0o755)
    qa = QueueActions(Source(IdsEngine(["4XyZ1k2ABCz", "ALL", "../x", "8F2A61C0B3"])),
                      postsuper=str(fake_postsuper), config_dir="/etc/postfix-out", mta="",
                      reactor=reactor, metrics=Metrics())
    action = qa.run(change(State.HELD, State.OK))
    assert action is not None and action.ok and action.verb == "release"
    assert seen.read_text().splitlines() == ["-c /etc/postfix-out -H -", "4XyZ1k2ABCz",
                                             "8F2A61C0B3"]


@pytest.mark.parametrize(
    ("old", "new", "verb"),
    [
        (State.OK, State.HELD, "hold"),
        (State.THROTTLED, State.BLOCKED, "hold"),
        (State.HELD, State.BLOCKED, None),
        (State.BLOCKED, State.HELD, None),
        (State.HELD, State.OK, "release"),
        (State.BLOCKED, State.THROTTLED, "release"),
        (State.OK, State.THROTTLED, None),
    ],
)
def test_which_state_changes_touch_the_queue(old: State, new: State, verb: str | None) -> None:
    from extrusion.policyd.holdqueue import verb_for

    assert verb_for(change(old, new)) == verb
