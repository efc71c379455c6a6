"""The sender cap seen from outside: policy requests from more distinct clients than
`[scoring] max_senders`, and /metrics shows memory held to the cap and the evictions."""

from __future__ import annotations

import re
import socket
from typing import Any, ClassVar

from twisted.internet import defer

from .test_api import http
from .test_policyd_server import ServerCase
from .test_policyd_support import read_replies, request

CAP = 20
CLIENTS = 80


def metric(body: bytes, name: str) -> float:
    m = re.search(rb"^" + re.escape(name.encode()) + rb" (\S+)$", body, re.M)
    return float(m.group(1)) if m else -1.0


class SenderCap(ServerCase):
    sections: ClassVar[dict[str, dict[str, Any]]] = {"scoring": {"max_senders": CAP}}

    def metrics(self) -> bytes:
        assert self.svc.api_listener is not None
        _, _, body = http(self.svc.api_listener.tcp_port, "GET", "/metrics", token=None)
        return body

    def ask_all(self) -> list[bytes]:
        answers = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            for i in range(CLIENTS):
                s.sendall(request(client_address=f"198.51.100.{i + 1}", sasl_username="",
                                  sasl_method="", recipient=f"r{i}@remote.example"))
                answers += read_replies(s, 1)
        return answers

    @defer.inlineCallbacks
    def test_memory_stays_at_the_cap_and_the_metrics_say_so(self) -> Any:
        answers = yield self.in_thread(self.ask_all)
        self.assertEqual(len(answers), CLIENTS)
        self.assertTrue(all(a.startswith(b"action=") for a in answers))

        def settled() -> bytes | None:
            body = self.metrics()
            held = metric(body, "extrusion_engine_senders_in_memory")
            evicted = metric(body, "extrusion_engine_senders_evicted_total")
            return body if 0 < held <= CAP and evicted >= CLIENTS - CAP else None

        body = yield self.until("memory held to the cap", settled)
        self.assertLessEqual(metric(body, "extrusion_engine_senders_in_memory"), CAP)
