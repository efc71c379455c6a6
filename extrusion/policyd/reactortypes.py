"""Structural types for the parts of the reactor we use.

Twisted declares its reactor interfaces with zope.interface, which mypy
cannot check without a plugin; these Protocols say what the daemon needs so
that both the real reactor and `twisted.internet.task.Clock` fit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast


class DelayedCall(Protocol):
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> DelayedCall: ...


def global_reactor() -> Any:
    """The installed reactor, imported late so tests and the CLI can pick one first."""
    from twisted.internet import reactor

    return cast(Any, reactor)
