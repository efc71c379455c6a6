"""What every milter connection shares: the settings, the guarded engine, the clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from extrusion import identity
from extrusion.config import Config
from extrusion.keys import client_key
from extrusion.milter.guard import EngineGuard
from extrusion.milter.heloconfirm import HeloResolver


@dataclass(frozen=True)
class Settings:
    """The [milter] config values the callbacks use."""

    on_error: str = "accept"
    add_header: bool = False
    reject_bad_helo: bool = False
    rate_limits: bool = False
    mta: str = ""

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        m = config.milter
        return cls(on_error=m.on_error, add_header=m.add_header,
                   reject_bad_helo=m.reject_bad_helo, rate_limits=m.rate_limits,
                   mta=identity.mta_name(config))


@dataclass
class Runtime:
    """What all connections share: the guarded engine, the settings and the clock."""

    guard: EngineGuard
    settings: Settings = field(default_factory=Settings)
    clock: Callable[[], float] = time.time
    # Looks up whether a bare-domain HELO resolves to the client (the daemon makes one;
    # None: no lookups, as in tests that play sessions without a DNS).
    helo_resolver: HeloResolver | None = None
    _said: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def first_time(self, what: str) -> bool:
        """True once per process for `what`: for warnings about the MTA's set-up."""
        with self._lock:
            if what in self._said:
                return False
            self._said.add(what)
            return True


def fallback_sender_key(client_addr: str, sasl_user: str) -> str:
    """The DESIGN's key when the engine cannot compute it (customer mapping is lost)."""
    return client_key(client_addr, sasl_user)
