"""Where a followed log's checkpoint stands: how far a restart resumes (`offset`) and
how far lines were (or may have been) read before it (`reached`).

`extrusion.maillog.follow` saves what these functions compute.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from extrusion.checkpoint import Position
from extrusion.maillog.rotation import OpenFile


def announced(cur: OpenFile, saved: Position | None, most: int) -> tuple[int, Position | None]:
    """Before reading `cur`: the bytes this poll may read (at most `most`, up to the
    file's size now, so that what a restart looks up is no more than what was read),
    and the position to save first when the saved one does not cover them (else None).

    The engine may write what these lines hold before the checkpoint after them is
    saved (a background flush, or a crash between the commit and the save), and a
    restart must look up, not record again, whatever they may have recorded."""
    bound = min(os.fstat(cur.fd).st_size, cur.pos + most)
    if bound <= cur.pos:
        return 0, None  # nothing new to read
    same = saved is not None and saved.inode == cur.ino
    if saved is not None and same and saved.reached >= bound:
        return bound - cur.pos, None
    offset = min(saved.offset, cur.offset) if saved is not None and same else cur.offset
    return bound - cur.pos, Position(cur.ino, offset, bound, cur.dev)


def after_poll(cur: OpenFile, hold: Callable[[int], int | None] | None) -> Position:
    """The position after a poll: everything up to `cur.offset` read, a restart resuming
    at the oldest line `hold` says is still only in memory."""
    offset = cur.offset
    if hold is not None and (held := hold(cur.ino)) is not None:
        offset = min(offset, max(held, 0))
    return Position(cur.ino, offset, cur.offset, cur.dev)
