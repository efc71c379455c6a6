"""Who is under attention: the senders whose sessions deserve the milter's full view.

On Postfix the milter adds little to what the policy delegation and the log
already tell about a sender in good standing (README, "Attaching the milter
only where it adds evidence"); for a sender the engine is watching, throttling,
holding, blocking or has on probation, its headers, size and every HELO of the
session are evidence worth their cost. Postfix decides per client address at
connect time, before any SASL login, so the answer names keys and addresses:
a sender's key (`ip:`, `customer:` or `sasl:`) and the address each such sender
last came from. Pure bookkeeping over the engine's memory; no clock, no store.

`AttentionIndex` keeps the answer as senders change, so that asking costs the
senders under attention, not a pass over every sender in memory (a million in
MX mode, issue 20): the book notes a sender wherever its state, probation or
address may have changed, and drops one it forgets. `attention_of()` is the
definition the index is tested against.
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


class AttentionIndex:
    """The senders under attention, kept at each change (call with the book's lock).

    Several senders may share an address (SASL users behind one NAT), so each
    address counts the senders under attention last seen there and leaves the
    answer with the last of them.
    """

    __slots__ = ("_address_of", "_answer", "_senders_at")

    def __init__(self) -> None:
        self._address_of: dict[str, str] = {}  # key under attention -> its address ("")
        self._senders_at: dict[str, int] = {}  # address -> keys under attention there
        self._answer: Attention | None = Attention()  # None: changed since last asked

    def __len__(self) -> int:
        return len(self._address_of)

    def note(self, mem: SenderMemory) -> None:
        """`mem`'s state, probation or address may have changed: keep it or let it go."""
        if mem.state is not State.OK or mem.probation is not None:
            key, address = mem.key, mem.client_addr
            known = self._address_of.get(key)
            if known == address:
                return
            if known is not None:
                self._leave(known)
            self._address_of[key] = address
            if address:
                self._senders_at[address] = self._senders_at.get(address, 0) + 1
            self._answer = None
        elif self._address_of:
            self.drop(mem.key)

    def drop(self, key: str) -> None:
        """The sender `key` is no longer under attention, or no longer in memory."""
        address = self._address_of.pop(key, None)
        if address is None:
            return
        self._leave(address)
        self._answer = None

    def _leave(self, address: str) -> None:
        if not address:
            return
        left = self._senders_at[address] - 1
        if left:
            self._senders_at[address] = left
        else:
            del self._senders_at[address]

    def attention(self) -> Attention:
        """The answer; made again only after a change, in time proportional to its size."""
        answer = self._answer
        if answer is None:
            answer = self._answer = Attention(frozenset(self._address_of),
                                              frozenset(self._senders_at))
        return answer
