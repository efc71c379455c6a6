"""Whether a bare-domain HELO resolves to the connecting client.

A small firm's server says `smallfirm.example` and sends as
`info@smallfirm.example`; a bot says the domain it forges in MAIL FROM. What
tells them apart without trusting the client: the firm's domain resolves to
the firm's server, the forged one does not resolve to the bot. Only the one
case that needs it is looked up (a HELO that is a bare registered domain
and the MAIL FROM domain), with a deadline, on a small pool of threads, and
remembered for a while, so a slow or hostile DNS costs a session at most
LOOKUP_TIMEOUT and the resolver at most WORKERS threads.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from extrusion.netaddr import ip_of
from extrusion.scoring.helo import address_domain, registered_domain

LOOKUP_TIMEOUT = 2.0  # seconds a session waits for one lookup
WORKERS = 4  # lookups in flight at most; more wait, and time out as unconfirmed
CACHE_SIZE = 4096  # names remembered
CACHE_SECONDS = 3600.0  # how long an answer (or its absence) is remembered

Lookup = Callable[[str], Sequence[str]]


def getaddrinfo_lookup(name: str) -> Sequence[str]:
    """The addresses a name resolves to (A and AAAA), as the system resolver says."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return ()
    return tuple(str(info[4][0]) for info in infos)


class HeloResolver:
    """Answers `confirmed(helos, client_addr, envelope_from)`: the HELOs worth a lookup
    that resolve to the client. Thread-safe; never raises."""

    def __init__(self, lookup: Lookup = getaddrinfo_lookup, *,
                 timeout: float = LOOKUP_TIMEOUT, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self._lookup = lookup
        self._timeout = timeout
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="helo-dns")
        self._cache: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def confirmed(self, helos: Sequence[str], client_addr: str,
                  envelope_from: str) -> tuple[str, ...]:
        client = ip_of(client_addr)
        from_rd = registered_domain(address_domain(envelope_from)) if envelope_from else None
        if client is None or from_rd is None:
            return ()
        found = []
        for helo in helos:
            name = helo.strip().lower().rstrip(".")
            # Only the case SENDER_DOMAIN judges: the bare MAIL FROM domain as HELO.
            if name != from_rd:
                continue
            if any(ip_of(a) == client for a in self._addresses(name)):
                found.append(name)
        return tuple(found)

    def _addresses(self, name: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and now - hit[0] < CACHE_SECONDS:
                return hit[1]
        try:
            answer = frozenset(self._pool.submit(self._lookup, name).result(self._timeout))
        except FutureTimeout:
            return frozenset()  # not remembered: the next session may get an answer
        except Exception:
            answer = frozenset()
        with self._lock:
            self._cache[name] = (now, answer)
            self._cache.move_to_end(name)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return answer

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
