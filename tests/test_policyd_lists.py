"""A mailing list through the real policy server under the shipped limits.

conf/extrusion.toml as shipped (only the store, the listen addresses and the
milter switch changed for the test), a real listening server, and the policy
requests Postfix sends for a 2,000-member list posting three times: not one
answer other than DUNNO (or OK). The safety net is still there for a runaway.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from extrusion import config as configmod
from extrusion.config import Config

from .conftest import REPO
from .test_policyd_server import ServerCase, connect
from .test_policyd_support import make_config, read_replies, request

SHIPPED = REPO / "conf" / "extrusion.toml"
LIST_CLIENT = "192.0.2.25"
# Postfix's smtpd_recipient_limit: a list manager splits a post into transactions of this many.
RECIPIENTS_PER_TRANSACTION = 1000
DUNNO = b"action=DUNNO\n\n"
GO_ON = (DUNNO, b"action=OK\n\n")  # the answers that let a recipient or message through


def transaction(rcpts: list[str], client: str = LIST_CLIENT) -> bytes:
    """The requests of one SMTP transaction: one per RCPT TO, then END-OF-MESSAGE."""
    common: dict[str, Any] = {"client_address": client, "sasl_username": "", "sasl_method": "",
                              "helo_name": "lists.example.org",
                              "sender": "members-bounces@lists.example.org"}
    return b"".join(request("RCPT", recipient=r, recipient_count=i, **common)
                    for i, r in enumerate(rcpts)) + request(
        "END-OF-MESSAGE", recipient="", recipient_count=len(rcpts), queue_id="4XyZ1k2ABCz",
        size=5120, **common)


def deliver(port: int, rcpts: list[str], client: str = LIST_CLIENT) -> list[list[bytes]]:
    """One post, transaction by transaction, each pipelined on its own connection.

    The replies of each transaction: one per recipient, the last END-OF-MESSAGE's.
    """
    replies: list[list[bytes]] = []
    for start in range(0, len(rcpts), RECIPIENTS_PER_TRANSACTION):
        batch = rcpts[start:start + RECIPIENTS_PER_TRANSACTION]
        with connect(port) as s:
            s.sendall(transaction(batch, client))
            replies.append(read_replies(s, len(batch) + 1))
    return replies


class ShippedLimitsTests(ServerCase):
    def config(self) -> Config:
        # The shipped file with the test's store, ports and milter switch: those
        # sections of make_config() differ from the shipped ones in nothing else.
        shipped = configmod.as_dict(configmod.load(SHIPPED))
        test = configmod.as_dict(make_config(self.tmp))
        for name in ("general", "store", "policyd", "api", "milter"):
            shipped[name] = test[name]
        return configmod.from_dict(shipped, self.tmp / "extrusion.toml")

    def test_the_config_is_the_shipped_one(self) -> None:
        self.assertEqual(self.cfg.limits, configmod.load(SHIPPED).limits)

    @defer.inlineCallbacks
    def test_a_2000_member_list_posting_three_times_gets_only_dunno(self) -> Any:
        members = [f"member{i}@example{i % 7}.org" for i in range(2000)]
        for n in range(3):
            transactions = yield self.in_thread(deliver, self.port, members)
            replies = [r for t in transactions for r in t]
            self.assertEqual(len(replies), 2002, f"post {n + 1}")
            others = [r for r in replies if r not in GO_ON]
            self.assertEqual(len(others), 0, f"post {n + 1}: first refusal {others[:1]}")

    @defer.inlineCallbacks
    def test_a_runaway_client_still_meets_the_safety_net(self) -> Any:
        limit = self.cfg.limits["default"].recipients_per_hour
        rcpts = [f"r{i}@example.com" for i in range(limit + 5)]
        transactions = yield self.in_thread(deliver, self.port, rcpts, "192.0.2.99")
        at_rcpt = [r for t in transactions for r in t[:-1]]
        self.assertEqual(at_rcpt[:limit], [DUNNO] * limit)
        refused = at_rcpt[limit:]
        self.assertEqual(len(refused), 5)
        for r in refused:
            self.assertIn(b" 4.7.1 extrusion: rate limited (too many recipients per hour)", r)
