"""The files behind a followed log: one open file's position, and where a rotated
log's unread rest went (renamed aside, or copied before a truncate).

`extrusion.maillog.follow` reads; this module only finds and describes files.
"""

from __future__ import annotations

import os
from pathlib import Path

from extrusion.maillog.lines import MAX_LINE

# Bytes before our position remembered to notice a copytruncate rewrite.
FINGERPRINT_BYTES = 128
# Polls an old file stays open after rename rotation for its writer's last lines.
ROTATION_GRACE_POLLS = 5
# Rotated siblings a follower never reads back (it reads bytes, not archives).
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")


class OpenFile:
    """One open file: its inode, what was consumed, the unfinished line."""

    __slots__ = ("buf", "dev", "fd", "grace", "ino", "offset", "skip", "tail")

    def __init__(self, fd: int, ino: int, offset: int) -> None:
        self.fd = fd
        self.ino = ino
        self.dev = os.fstat(fd).st_dev
        self.offset = offset  # end of the last complete line handed over
        self.skip = 0  # bytes after offset of an over-long line, read and dropped
        self.buf = b""  # bytes after offset (and skip), waiting for their newline
        self.tail = b""  # the FINGERPRINT_BYTES before offset
        self.grace = ROTATION_GRACE_POLLS

    @property
    def pos(self) -> int:
        return self.offset + self.skip + len(self.buf)


def siblings(path: Path) -> list[Path]:
    """Uncompressed files beside `path` whose names start with its name (`mail.log.1`,
    `mail.log-20261130`)."""
    base = path.name
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    return [p for p in entries
            if p.name != base and p.name.startswith(base) and not p.name.endswith(_COMPRESSED)]


def rotated_sibling(path: Path, ino: int, offset: int) -> Path | None:
    """The sibling that is the file `ino` (renamed aside), if it still holds `offset`."""
    for sibling in siblings(path):
        try:
            st = sibling.stat()
        except OSError:
            continue
        if st.st_ino == ino and st.st_size >= offset:
            return sibling
    return None


def copied_sibling(path: Path, offset: int, exclude: int, tail: bytes = b"") -> Path | None:
    """The newest sibling (not the file `exclude`) that is a copy of the log up to
    `offset` at least: its bytes before `offset` are `tail` when known, else at least
    `offset` falls at a line boundary in it (after a restart no fingerprint is kept)."""
    best: tuple[float, Path] | None = None
    for sibling in siblings(path):
        try:
            st = sibling.stat()
        except OSError:
            continue
        if st.st_ino == exclude or st.st_size < offset:
            continue
        with open(sibling, "rb") as f:
            f.seek(max(0, offset - max(len(tail), 1)))
            before = f.read(max(len(tail), 1))
        if (tail and before != tail) or (not tail and offset and before != b"\n"):
            continue
        if best is None or st.st_mtime > best[0]:
            best = (st.st_mtime, sibling)
    return None if best is None else best[1]


def pread_back(fd: int, offset: int, n: int = FINGERPRINT_BYTES) -> bytes:
    """The up to `n` bytes just before `offset`."""
    start = max(0, offset - n)
    return os.pread(fd, offset - start, start) if offset else b""


def line_start_before(fd: int, size: int) -> int:
    """Where the last (possibly unfinished) line of the file starts."""
    if size == 0:
        return 0
    window = min(size, MAX_LINE)
    data = os.pread(fd, window, size - window)
    nl = data.rfind(b"\n")
    if nl < 0:
        return size - window if window < size else 0
    return size - window + nl + 1
