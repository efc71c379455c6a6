"""`[flows] enabled`: the policy daemon (as `extrusion serve` runs it) follows pmacct's
output and the bot it finds is judged by the same engine its smarthost mail meets."""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet import defer

from extrusion.config import Config
from extrusion.flows.simulate import mx_address

from .test_api import http
from .test_policyd_feed import ask
from .test_policyd_server import ServerCase
from .test_policyd_support import make_config, request

BOT = "10.1.2.3"


def record(dst: str) -> str:
    now = int(time.time())
    return json.dumps({"ip_src": BOT, "ip_dst": dst, "port_dst": 25, "ip_proto": "tcp",
                       "sampling_rate": 2000, "stamp_inserted": now - now % 3600,
                       "stamp_updated": now, "packets": 1, "bytes": 1500})


class FlowsInServe(ServerCase):
    def config(self) -> Config:
        self.records = self.tmp / "port25.json"
        self.records.write_text("")
        self.border = self.tmp / "border.nft"
        return make_config(
            self.tmp,
            general={"own_networks": ["10.0.0.0/8"]},
            weights={"direct_to_mx": 50.0},  # held at the first finding
            flows={"enabled": True, "path": str(self.records), "poll_seconds": 0.2,
                   "export_path": str(self.border)},
        )

    def diagnostics(self) -> str:
        follower = getattr(self.svc.flows, "follower", None)
        return f"; flows {follower.feed.stats if follower is not None else None}"

    def state(self) -> Any:
        assert self.svc.api_listener is not None
        self.engine.flush()
        code, _, raw = http(self.svc.api_listener.tcp_port, "GET", f"/senders/ip:{BOT}",
                            token=None)
        return json.loads(raw)["state"] if code == 200 else None

    @defer.inlineCallbacks
    def test_a_bot_in_the_flow_records_is_held_at_the_smarthost_and_exported(self) -> Any:
        got = yield self.in_thread(ask, self.port, request(sasl_username="",
                                                           client_address=BOT))
        self.assertEqual(got, b"action=DUNNO\n\n")
        with self.records.open("a") as out:
            out.write("a garbled line\n")
            out.writelines(record(mx_address(i)) + "\n" for i in range(12))
        yield self.until("the bot to be held", lambda: self.state() == "held")
        got = yield self.in_thread(ask, self.port, request(sasl_username="",
                                                           client_address=BOT))
        self.assertFalse(got.startswith(b"action=DUNNO"), got)
        yield self.until("the border export", lambda: self.border.exists()
                         and f"{{ {BOT} }}" in self.border.read_text())
        stats = self.svc.flows.follower.feed.stats
        self.assertEqual((stats.bad, stats.findings), (1, 1))
