"""Who is under attention: the senders whose sessions deserve the milter's full view.

On Postfix the milter adds little to what the policy delegation and the log
already tell about a sender in good standing (README, "Attaching the milter
only where it adds evidence"); for a sender the engine is watching, throttling,
holding, blocking or has on probation, its headers, size and every HELO of the
session are evidence worth their cost. Postfix decides per client address at
connect time, before any SASL login, so the answer names keys and addresses:
a sender's key (`ip:`, `customer:` or `sasl:`) and the address each such sender
last came from. Pure bookkeeping over the engine's memory; no clock, no store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from extrusion.scoring.events import State
from extrusion.scoring.memory import SenderMemory


@dataclass(frozen=True, slots=True)
class Attention:
    """Sender keys under attention and the client addresses they were last seen at."""

    keys: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()


def under_attention(mem: SenderMemory) -> bool:
    """Any state but plain ok, or on probation (a small budget until outcomes come back)."""
    return mem.state is not State.OK or mem.probation is not None


def attention_of(senders: Iterable[SenderMemory]) -> Attention:
    keys: set[str] = set()
    addresses: set[str] = set()
    for mem in senders:
        if under_attention(mem):
            keys.add(mem.key)
            if mem.client_addr:
                addresses.add(mem.client_addr)
    return Attention(frozenset(keys), frozenset(addresses))
