"""A local journal of syslog datagrams, so the syslog feed is as crash-safe as the file feed.

A datagram has no file to read again after a crash: once taken off the socket
it lives only in memory. The syslog receiver therefore appends each accepted
datagram, already split, as one JSON line to `<spool_dir>/syslog-journal/journal`
before anything else happens to it, and the feed reads that file through the
file feed's crash-safe path (`recovery.CrashSafeFeed`: checkpoints in the
store, re-read lines de-duplicated), so a `kill -9` loses and doubles nothing
that reached the journal.

- **Format.** `[time, host, program, pid, message]` for a syslog message, a
  JSON string for a datagram that is not syslog (the feed counts it garbled
  unless it is a log line): JSON keeps newlines and control characters of a
  hostile datagram inside its one line, and the time exactly.
- **Rotation.** When the journal reaches half of `[maillog]
  syslog_journal_max_bytes` it is renamed to `journal.1` and a new one begun,
  as logrotate would, and the follower finishes the old file first. `journal.1`
  is deleted as soon as the checkpoint has moved past it (`release()`); a
  second rotation waits for that. As with a rotated log file, a message
  still open at the rotation no longer holds the checkpoint (at half the
  default cap, 128 MiB between rotations, that is rare).
- **Cap.** Both files together never exceed `syslog_journal_max_bytes`: when
  the journal is full (the feed is that far behind, e.g. the store is away for
  long), each further datagram is dropped, counted and logged as an ERROR (the
  first, then one in `DROPS_LOG_EVERY`), and the receiver keeps going; a line
  says when it accepts again.
- **fsync.** The receiver only appends (no fsync on the reactor thread): a
  process crash loses nothing, the bytes are in the kernel's page cache. The
  feed fsyncs the journal before each poll reads it, so a checkpoint never
  names bytes that are not on disk; a machine crash loses at most the last
  `[maillog] poll_seconds` of datagrams. Datagrams still in the kernel's
  socket buffer when the process dies are lost, as with any syslog receiver.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

DIRECTORY = "syslog-journal"
NAME = "journal"
ROTATED = NAME + ".1"
# Datagrams dropped on a full journal logged as an ERROR: the first, then one in this many.
DROPS_LOG_EVERY = 10_000
# The smallest cap accepted: room for a few of the longest datagrams in each half.
MIN_MAX_BYTES = 1 << 20


class Feed(Protocol):
    def entry(self, t: float, host: str, program: str, pid: str, message: str) -> None: ...

    def line(self, text: str) -> None: ...


def journal_dir(spool_dir: str) -> Path:
    """Where the syslog feed keeps its journal: beside the engine's spool."""
    return Path(spool_dir) / DIRECTORY


class SyslogJournal:
    """The writing side (the reactor thread) and the housekeeping of the reading side."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"syslog journal: max_bytes must be at least {MIN_MAX_BYTES}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.dir / NAME
        self.rotated = self.dir / ROTATED
        self.segment_bytes = max_bytes // 2
        self.written = 0  # datagrams journaled by this process
        self.dropped = 0  # datagrams refused: journal full or not writable
        self.rotations = 0
        self._full = False
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    # --- the receiver's side (SyslogProtocol calls these as it would call a LogFeed) -----

    def entry(self, t: float, host: str, program: str, pid: str, message: str) -> None:
        self.append(json.dumps([t, host, program, pid, message], ensure_ascii=False))

    def line(self, text: str) -> None:
        self.append(json.dumps(text, ensure_ascii=False))

    def append(self, record: str) -> bool:
        """Journal one record (one line of JSON); False when it was dropped."""
        data = record.encode("utf-8", "replace") + b"\n"
        if self._size + len(data) > self.segment_bytes and not self._rotate():
            self._drop("the journal is full")
            return False
        try:
            self._write_all(data)
        except OSError as exc:  # a full disk: the same as a full journal, said so
            self._drop(f"cannot write {self.path}: {exc.strerror}")
            return False
        self._size += len(data)
        self.written += 1
        if self._full:
            self._full = False
            log.warning("syslog journal %s accepts datagrams again (%d dropped so far)",
                        self.path, self.dropped)
        return True

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _rotate(self) -> bool:
        """Begin a new journal if the old one was released; False: the journal is full."""
        if self.rotated.exists():
            return False
        os.rename(self.path, self.rotated)
        os.close(self._fd)
        self._fd = self._open()
        self._size = 0
        self.rotations += 1
        return True

    def _drop(self, why: str) -> None:
        self.dropped += 1
        self._full = True
        if self.dropped == 1 or not self.dropped % DROPS_LOG_EVERY:
            log.error("syslog datagram DROPPED: %s (%d dropped so far; the feed is behind "
                      "by [maillog] syslog_journal_max_bytes = %d; is the store reachable?)",
                      why, self.dropped, 2 * self.segment_bytes)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # --- the feed's side (its worker thread) ---------------------------------------------

    def sync(self) -> None:
        """Make what was journaled durable before the feed reads (and checkpoints) it."""
        for path in (self.rotated, self.path):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def release(self, open_inodes: set[int], saved_inode: int | None) -> bool:
        """Delete `journal.1` once the follower has closed it and the checkpoint names
        another file; True when it was deleted (and the next rotation may happen)."""
        try:
            ino = self.rotated.stat().st_ino
        except FileNotFoundError:
            return False
        if ino in open_inodes or saved_inode in (None, ino):
            return False
        self.rotated.unlink()
        return True

    def unread_bytes(self, position: tuple[int, int] | None) -> int:
        """Bytes journaled and not read yet, given the follower's (inode, offset)."""
        total = 0
        for path in (self.rotated, self.path):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if position is not None and st.st_ino == position[0]:
                return total + max(0, st.st_size - position[1])
            total += st.st_size
        return total


def deliver(feed: Feed, text: str) -> None:
    """One journal line to the feed, as the datagram would have gone to it."""
    try:
        value: Any = json.loads(text)
    except ValueError:
        feed.line(text)  # not written by us (a torn write after a machine crash): garbled
        return
    if isinstance(value, str):
        feed.line(value)
    elif (isinstance(value, list) and len(value) == 5 and isinstance(value[0], (int, float))
          and all(isinstance(v, str) for v in value[1:])):
        feed.entry(float(value[0]), value[1], value[2], value[3], value[4])
    else:
        feed.line(text)
