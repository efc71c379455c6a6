"""A policy reply sent on the socket at once, where Twisted's `write()` would queue it.

`write()` registers the socket for writability and sends on the reactor's next
turn: two epoll calls and a turn of the reactor thread per reply, for a reply
that the socket nearly always takes whole (measured in benchmarks/reply_write.py).
Used only where it is safe to bypass the queue: a plain TCP or unix connection of
a Twisted that keeps the buffer attributes read here, with nothing queued before
the reply. Anything else goes through `write()` as usual.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

#: What send_reply() reads of Twisted's FileDescriptor to know nothing is queued.
_TWISTED_BUFFER = ("dataBuffer", "offset", "_tempDataLen", "connected", "socket")


def direct_socket(transport: object) -> Any:
    """The socket a reply can be sent on at once, or None to leave it to Twisted.

    Twisted's `write()` only queues: the reply leaves on the reactor's next turn,
    after an epoll registration for writability and another to drop it, all on
    the reactor thread, for a reply that the socket nearly always takes at once.
    Only plain TCP and unix connections (not TLS, not the tests' transports)."""
    if isinstance(transport, tcp.Connection) and not getattr(transport, "TLS", True) and all(
        hasattr(transport, name) for name in _TWISTED_BUFFER  # a Twisted that keeps them
    ):
        return transport.socket
    return None


def send_reply(transport: Any, sock: Any, data: bytes) -> None:
    """Send `data` now if nothing is queued before it; what the socket does not take
    (or any error, which Twisted's own write then meets and handles) goes to Twisted.
    What Twisted still holds is `dataBuffer` from `offset` and `_tempDataLen` bytes
    more (abstract.FileDescriptor): anything there must leave before this reply."""
    if sock is not None and not transport._tempDataLen and (
        transport.offset == len(transport.dataBuffer) and transport.connected
    ):
        try:
            sent = sock.send(data)
        except OSError:
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
