"""Probation through the real policy server: a sender whose mail suddenly looks like a
bot's is deferred (DEFER_IF_PERMIT 4.7.1 … probation) past its budget, and released as
soon as the outcomes of its first deliveries come back good."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from twisted.internet import defer

from extrusion.scoring.events import Outcome, Stage, State, StateChange, Status, Submission

from .test_policyd_server import ServerCase, exchange
from .test_policyd_support import request

CLIENT = "198.51.100.7"
SENDER_KEY = f"ip:{CLIENT}"
FORGED = "kwntefsqhi@usa.net"  # a freemail sender, unauthenticated, on port 25


def rcpt(i: int) -> bytes:
    return request("RCPT", sender=FORGED, sasl_username="", sasl_method="",
                   client_address=CLIENT, recipient=f"r{i}@example.org")


class ProbationTests(ServerCase):
    sections: ClassVar[dict[str, dict[str, Any]]] = {
        "probation": {"recipients": 5, "release_deliveries": 3}}

    def state(self) -> State:
        state: State = self.engine.decide(SENDER_KEY, Stage.CONNECT, count=False).state
        return state

    def deliver(self, n: int) -> None:
        """What the log feed tells the engine: a message of `n` recipients, all delivered."""
        now = time.time()
        rcpts = tuple(f"friend{i}@example.org" for i in range(n))
        self.engine.submission(Submission(now, SENDER_KEY, "4F2A1B3C9D", FORGED, rcpts,
                                          client_addr=CLIENT))
        for r in rcpts:
            self.engine.outcome(Outcome(time.time(), "4F2A1B3C9D", r, Status.SENT, "2.0.0",
                                        "250 2.0.0 Ok: queued as 1234", sender=SENDER_KEY))

    @defer.inlineCallbacks
    def test_deferred_past_the_budget_then_released_by_good_outcomes(self) -> Any:
        heard: list[StateChange] = []
        self.engine.add_listener(heard.append)
        data = b"".join(rcpt(i) for i in range(7))
        got = yield self.in_thread(exchange, self.port, data, 7)
        # Its first five recipients pass (a consumer's first message flows), then 4.7.1.
        self.assertEqual(got[:5], [b"action=DUNNO\n\n"] * 5)
        for r in got[5:]:
            self.assertTrue(r.startswith(b"action=DEFER_IF_PERMIT 4.7.1 extrusion: rate "
                                         b"limited (new sending pattern on probation)"), r)
        self.assertIn("freemail sender without authentication: usa.net",
                      self.engine._senders[SENDER_KEY].probation.reason)
        self.assertIs(self.state(), State.WATCH)
        self.assertTrue(heard[-1].reason.startswith(
            "probation: freemail sender without authentication"), heard[-1].reason)

        yield self.in_thread(self.deliver, 3)
        again = yield self.in_thread(exchange, self.port, rcpt(8), 1)
        self.assertEqual(again, [b"action=DUNNO\n\n"])
        self.assertIsNone(self.engine._senders[SENDER_KEY].probation)
        self.assertIs(self.state(), State.OK)
        self.assertEqual((heard[-1].new, heard[-1].reason),
                         (State.OK, "probation ended: 3 recipients delivered, 0% failing"))
