"""Where a log follower stopped, by name: the file (device, inode) and two offsets.

`offset` is where a restarted follower resumes reading; `reached` is the end of
the last line it handed over. They differ when a line's evidence was still only
in memory (a half-joined message): the follower then keeps the checkpoint at
that line, and a restart reads from `offset` again while the lines up to
`reached` are known to have been read before (see extrusion/maillog/recovery.py).

`extrusion.scoring.store.Store` implements `Checkpoints` with its checkpoint
table, so a restarted daemon resumes where it stopped; `MemoryCheckpoints`
serves replay and tests.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class Position(NamedTuple):
    inode: int
    offset: int  # where reading resumes
    reached: int  # end of the last line read (>= offset)
    device: int = 0  # 0: not known (a checkpoint saved before devices were)

    def check(self, name: str) -> None:
        if min(self.inode, self.offset, self.reached, self.device) < 0:
            raise ValueError(f"checkpoint {name!r}: inode and offsets must not be negative")
        if self.reached < self.offset:
            raise ValueError(f"checkpoint {name!r}: reached {self.reached} is before "
                             f"offset {self.offset}")


class Checkpoints(Protocol):
    def get_checkpoint(self, name: str) -> Position | None:
        """The position saved for `name`, or None."""

    def set_checkpoint(self, name: str, position: Position) -> None:
        """Remember where follower `name` is."""


class MemoryCheckpoints:
    """Checkpoints kept in a dict (lost with the process)."""

    def __init__(self) -> None:
        self.saved: dict[str, Position] = {}

    def get_checkpoint(self, name: str) -> Position | None:
        return self.saved.get(name)

    def set_checkpoint(self, name: str, position: Position) -> None:
        position.check(name)
        self.saved[name] = position
