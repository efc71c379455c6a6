"""MX mode: the same address's mail at our MX annotates its direct port-25 flows.

The talk's annotation of good and bad. In `[general] mode = "mx"` the mail-log
feed and the flow follower share one engine, so the mail an own-range address
delivered to our MX is already counted on the sender key its flows land on
(`ip:ADDR`, `customer:NAME`): the store's per-minute counters of delivery
statuses and the `spam_verdicts` finding. Read from there, not kept twice:

- refused or spam-flagged mail at our MX and direct sending: a bot, flagged
  at lower minimums and with more weight (`[flows] mx_escalation`);
- only clean mail at our MX (delivered, never refused, never judged spam)
  and a low direct rate (`[flows] mx_clean_packets_per_hour`): a person's
  machine with a mail client set up oddly, not flagged on the flows alone.

The store is asked at most once per sender key per `CACHE_SECONDS`, and only
for sources already near a minimum, so the lookups stay far below the
record rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extrusion.scoring.events import Status
from extrusion.scoring.kinds import Kind

log = logging.getLogger("extrusion.flows")

CACHE_SECONDS = 300.0
MAX_CACHED = 10000
_REFUSED = (Status.REJECTED.value, Status.BOUNCED.value, Status.EXPIRED.value)


@dataclass(frozen=True, slots=True)
class MxMail:
    """Recipients of one sender's mail at our MX within the flow window."""

    delivered: int = 0
    refused: int = 0  # refused by the MX (spam filter, unknown users) or bounced
    spam: int = 0  # delivered but judged spam by the filter (its headers, via the milter)

    @property
    def bad(self) -> int:
        return self.refused + self.spam

    @property
    def clean(self) -> bool:
        return self.delivered > 0 and self.bad == 0


class MxNotes:
    """`of(addr, now)`: the MX mail of the sender key `addr`'s flows land on."""

    def __init__(self, store: Any, key_of: Callable[[str], str], window: float) -> None:
        self.store = store  # extrusion.scoring.store.Store, or None (nothing known)
        self.key_of = key_of  # the engine's sender_key for a client address
        self.window = window
        self._cache: dict[str, tuple[float, MxMail]] = {}
        self.lookups = 0

    def of(self, addr: str, now: float) -> MxMail:
        key = self.key_of(addr)
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        mail = self._read(key, now)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()  # bounded; the next lookups refill it
        self._cache[key] = (now, mail)
        return mail

    def _read(self, key: str, now: float) -> MxMail:
        if self.store is None:
            return MxMail()
        self.lookups += 1
        since = now - self.window
        try:
            delivered = _total(self.store.counters(key, Status.SENT.value, since))
            refused = sum(_total(self.store.counters(key, s, since)) for s in _REFUSED)
            row = self.store.sender(key)
        except Exception as exc:  # the store down: no annotation, the flows judged alone
            log.warning("flows: MX mail of %s not readable: %s", key, exc)
            return MxMail()
        spam = 0
        if row is not None:
            f = row.findings.get(Kind.SPAM_VERDICTS)
            if isinstance(f, dict) and float(f.get("last", now)) >= since:
                spam = int(f.get("count", 0))
        return MxMail(delivered, refused, spam)


def _total(buckets: dict[int, float]) -> int:
    return int(sum(buckets.values()))


def notes_for(engine: Any, config: Any) -> MxNotes | None:
    """The annotation when `[general] mode = "mx"` and `[flows] mx_annotation` are on,
    over the engine's own store and sender keys; None otherwise."""
    if config.general.mode != "mx" or not config.flows.mx_annotation:
        return None
    key_of = getattr(engine, "sender_key", None)
    if key_of is None:
        return None
    return MxNotes(getattr(engine, "store", None), lambda addr: str(key_of(client_addr=addr)),
                   config.flows.window_seconds)
