"""A service that listens on a Twisted endpoint string and knows when it is listening.

Like `twisted.application.strports.service`, plus a `ready` Deferred (for
systemd readiness and tests) and the bound address (so `tcp:0` works).
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.python.failure import Failure

log = logging.getLogger("extrusion.policyd")


class ListenService(Service):
    def __init__(self, reactor: Any, description: str, factory: Any, what: str) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = factory
        self.what = what
        self.port: Any = None
        self.ready: defer.Deferred[Any] = defer.Deferred()
        self._listening: defer.Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        endpoint = endpoints.serverFromString(  # type: ignore[no-untyped-call]
            self.reactor, self.description
        )
        self._listening = endpoint.listen(self.factory)
        self._listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: Any) -> None:
        self._listening = None
        self.port = port
        log.info("%s listening on %s", self.what, self.address)
        self.ready.callback(port)

    def _failed(self, failure: Failure) -> None:
        self._listening = None
        log.error("%s cannot listen on %s: %s", self.what, self.description,
                  failure.getErrorMessage())
        self.ready.errback(failure)

    @property
    def address(self) -> str:
        if self.port is None:
            return self.description
        host = self.port.getHost()
        if hasattr(host, "port"):
            return f"{host.host}:{host.port}"
        return str(getattr(host, "name", self.description))

    @property
    def tcp_port(self) -> int:
        """The bound TCP port (useful with `tcp:0`)."""
        return int(self.port.getHost().port)

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._listening is not None:
            self._listening.cancel()
        if self.port is None:
            return defer.succeed(None)
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening)
