"""Replies go straight to the socket, and to the transport's buffer only when the
kernel does not take them all; either way every reply arrives whole and in order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet import main, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from extrusion.policyd.metrics import Metrics
from extrusion.policyd.protocol import PolicyFactory, PolicyProtocol
from extrusion.policyd.responder import Responder
from extrusion.scoring.engine import Engine, open_engine

from .test_policyd_support import make_config, reply, request


class Holder:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine


class SocketLike(StringTransport):
    """A transport with a socket's `writeSomeData`: the kernel takes `room` bytes."""

    def __init__(self, room: int, lost: bool = False) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.room = room
        self.lost = lost
        self.sent = b""  # what went out without the transport's buffer

    def writeSomeData(self, data: bytes) -> int | Failure:
        if self.lost:
            return Failure(main.CONNECTION_LOST)
        n = min(self.room, len(data))
        self.room -= n
        self.sent += bytes(data[:n])
        return n


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[PolicyFactory]:
    engine = open_engine(make_config(tmp_path))
    clock = task.Clock()
    clock.advance(time.time())
    metrics = Metrics()
    yield PolicyFactory(
        Responder(Holder(engine), "DUNNO", metrics, clock.seconds), metrics, clock,
        allowed_clients=("127.0.0.0/8",), max_line=512, max_attributes=40, idle_timeout=30.0,
    )
    engine.close()


def connect(factory: PolicyFactory, transport: SocketLike) -> PolicyProtocol:
    proto = factory.buildProtocol(transport.getPeer())
    assert proto is not None
    proto.makeConnection(transport)
    return proto


def test_replies_go_straight_to_the_socket(factory: PolicyFactory) -> None:
    tr = SocketLike(room=10_000)
    proto = connect(factory, tr)
    proto.dataReceived(request())
    proto.dataReceived(request() + request("END-OF-MESSAGE", recipient_count=1))
    assert tr.sent == reply("DUNNO") * 3
    assert tr.value() == b""  # nothing waited in the transport's buffer


def test_what_the_socket_does_not_take_waits_in_order(factory: PolicyFactory) -> None:
    tr = SocketLike(room=len(reply("DUNNO")) + 5)
    proto = connect(factory, tr)
    proto.dataReceived(request() + request())
    tr.room = 10_000  # the client reads again, but the buffer still holds a reply's end
    proto.dataReceived(request())
    assert tr.sent == reply("DUNNO") + reply("DUNNO")[:5]
    # Once anything waits, later replies queue behind it instead of overtaking it.
    assert tr.sent + tr.value() == reply("DUNNO") * 3


def test_a_lost_connection_hands_the_reply_to_the_transport(factory: PolicyFactory) -> None:
    tr = SocketLike(room=10_000, lost=True)
    proto = connect(factory, tr)
    proto.dataReceived(request())
    assert tr.sent == b""
    assert tr.value() == reply("DUNNO")  # Twisted's write path meets the loss and closes
