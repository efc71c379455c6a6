"""Where a log follower stopped: (inode, offset) per followed file, by name.

`extrusion.scoring.store.Store` implements `Checkpoints` with its checkpoint
table, so a restarted daemon resumes where it stopped; `MemoryCheckpoints`
serves replay and tests.
"""

from __future__ import annotations

from typing import Protocol


class Checkpoints(Protocol):
    def get_checkpoint(self, name: str) -> tuple[int, int] | None:
        """(inode, offset) saved for `name`, or None."""

    def set_checkpoint(self, name: str, inode: int, offset: int) -> None:
        """Remember that everything of file `inode` before `offset` was read."""


class MemoryCheckpoints:
    """Checkpoints kept in a dict (lost with the process)."""

    def __init__(self) -> None:
        self.saved: dict[str, tuple[int, int]] = {}

    def get_checkpoint(self, name: str) -> tuple[int, int] | None:
        return self.saved.get(name)

    def set_checkpoint(self, name: str, inode: int, offset: int) -> None:
        if inode < 0 or offset < 0:
            raise ValueError(f"checkpoint {name!r}: inode and offset must not be negative")
        self.saved[name] = (inode, offset)
