"""Follow a growing log file like `tail -F`, driven by `poll()`.

    follower = FileFollower("/var/log/mail.log", feed.line, checkpoints=store)
    LoopingCall(follower.poll).start(1.0)     # in the daemon; tests call poll() directly

Each `poll()` reads what was appended since the last one and hands every
complete line to the callback; a partial last line waits for its newline.
After each batch the position is saved through the `Checkpoints` protocol:
the file (device, inode), the end of the last complete line (`reached`) and
where a restart resumes (`offset`). With a `hold` callback the two differ:
`hold(inode)` names the start of the oldest line whose evidence is still only
in memory (a half-joined message), and the checkpoint stays there, so a crash
loses nothing; on restart the lines before `reached` are read again and
`rereading` says so while each is delivered (the receiver de-duplicates).
`line_at` is (inode, start offset) of the line being delivered. Before a
poll reads, `reached` is first saved as far as it may read, since what those
lines record may reach the store before the checkpoint after them is saved.

A line longer than `MAX_LINE_BYTES` is never held whole: its start goes to
the `too_long` callback (the feed counts it as garbled), the rest is read in
chunks and dropped up to its newline, and the line after it is read as usual.
A callback that raises costs its line only (logged): the position stays
exact and the next line is read.

Rotation:
- rename + create (logrotate's default, Postfix's `postfix logrotate`): when
  the path names a new file, the old one is read to its end first, and kept
  open for a few more polls for lines its writer adds before it reopens;
- copytruncate: the file shrinks or its bytes before our position change; the
  lines we had not read yet are taken from the copy (found beside the log by
  content), then the truncated file is read from its start;
- while stopped: a checkpoint naming another inode is looked up among the
  rotated siblings (`mail.log.1`, `mail.log-20261130`) and its rest read first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from extrusion.checkpoint import Checkpoints, Position
from extrusion.maillog.lines import MAX_LINE
from extrusion.maillog.positions import after_poll, announced
from extrusion.maillog.rotation import (
    FINGERPRINT_BYTES,
    OpenFile,
    copied_sibling,
    line_start_before,
    pread_back,
    rotated_sibling,
)
from extrusion.maillog.rotation import ROTATION_GRACE_POLLS as ROTATION_GRACE_POLLS

log = logging.getLogger(__name__)

# Bytes read per poll at most, so one poll never blocks the reactor for long.
MAX_READ_PER_POLL = 4 << 20
READ_CHUNK = 256 << 10
# A line longer than this is skipped (its head reported), never read whole.
MAX_LINE_BYTES = MAX_LINE
# Bytes of a skipped line's start handed to `too_long`: enough to recognise it.
TOO_LONG_HEAD_BYTES = 1024
# Problems logged in full: the first few, then one in this many.
PROBLEMS_LOGGED = 5
PROBLEMS_LOG_EVERY = 1000


class FileFollower:
    def __init__(
        self,
        path: str | os.PathLike[str],
        deliver: Callable[[str], None],
        *,
        checkpoints: Checkpoints | None = None,
        name: str | None = None,
        start_at: Literal["end", "beginning"] = "end",
        commit: Callable[[], None] | None = None,
        too_long: Callable[[str], None] | None = None,
        hold: Callable[[int], int | None] | None = None,
    ) -> None:
        """`deliver` gets each line (str, newline stripped). `name` keys the checkpoint
        (default: the absolute path). With no checkpoint, `start_at` says where to begin.
        `commit` runs before a checkpoint is saved (e.g. the engine's flush), so the
        saved position never runs ahead of what was recorded. `too_long` gets the start
        of each line over `MAX_LINE_BYTES` instead of `deliver` (default: logged). `hold`
gets the inode being followed and answers the start offset of the oldest line in
it whose evidence is only in memory (None: nothing held)."""
        self.path = Path(path)
        self.name = name or str(self.path.absolute())
        self.deliver = deliver
        self.too_long = too_long
        self.checkpoints = checkpoints
        self.start_at = start_at
        self.commit = commit
        self.hold = hold
        self.lines = 0
        self.too_long_lines = 0
        self.deliver_errors = 0
        self._cur: OpenFile | None = None
        self._old: list[OpenFile] = []
        self._started = False
        self._saved: Position | None = None
        self.line_at: tuple[int, int] = (0, 0)
        # (inode, reached) of the checkpoint started from: lines before it are read again.
        self._reread: tuple[int, int] = (0, 0)

    # --- public --------------------------------------------------------------------------

    def poll(self) -> int:
        """Read what is new; returns the number of lines delivered."""
        before = self.lines
        if not self._started:
            self._start()
        elif self._cur is None:
            self._open_new()
        for old in list(self._old):
            self._read(old, MAX_READ_PER_POLL)
            old.grace -= 1
            if old.grace <= 0:
                self._retire(old)
        cur = self._cur
        if cur is not None:
            self._check_truncated(cur)
            budget = self._announce(cur)
            at_eof = self._read(cur, budget) if budget else True
            if at_eof:
                self._check_rotated(cur)
        self._checkpoint(delivered=self.lines > before)
        return self.lines - before

    @property
    def rereading(self) -> bool:
        """Whether the line being delivered was read before a restart."""
        ino, start = self.line_at
        return ino == self._reread[0] and start < self._reread[1]

    @property
    def position(self) -> tuple[int, int] | None:
        """(inode, offset) of the file being followed, as a checkpoint would save it."""
        return None if self._cur is None else (self._cur.ino, self._cur.offset)

    def open_inodes(self) -> set[int]:
        """The inodes of the files held open: the current one and rotated ones being finished."""
        return {f.ino for f in [*self._old, *([self._cur] if self._cur else [])]}

    @property
    def saved_inode(self) -> int | None:
        """The file the last checkpoint saved (or started from) names."""
        return None if self._saved is None else self._saved.inode

    def close(self) -> None:
        """Save the position and close every file; the unfinished line is left for next time."""
        self._checkpoint(delivered=True)
        for f in [*self._old, *([self._cur] if self._cur else [])]:
            os.close(f.fd)
        self._old.clear()
        self._cur = None

    # --- starting ------------------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        saved = self.checkpoints.get_checkpoint(self.name) if self.checkpoints else None
        self._saved = saved
        if saved is not None:
            self._reread = (saved.inode, saved.reached)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            # Not there (yet): a file that appears later is new and read from its start.
            if saved is not None:
                self._resume_rotated(saved.inode, saved.offset)
            return
        st = os.fstat(fd)
        if saved is None:
            offset = 0 if self.start_at == "beginning" else line_start_before(fd, st.st_size)
        else:
            ino, offset = saved.inode, saved.offset
            if ino != st.st_ino or saved.device not in (0, st.st_dev):
                self._resume_rotated(ino, offset)
                offset = 0
            elif st.st_size < offset:
                self._resume_copy(offset, exclude=st.st_ino)
                offset = 0
        cur = OpenFile(fd, st.st_ino, offset)
        cur.tail = pread_back(fd, offset)
        self._cur = cur

    def _resume_rotated(self, ino: int, offset: int) -> None:
        """The checkpointed file was renamed while we were stopped: finish it first."""
        found = rotated_sibling(self.path, ino, offset)
        if found is None:
            log.warning("%s: the file last read (inode %d) is gone; lines after offset %d "
                        "may be missed", self.path, ino, offset)
        else:
            self._drain_file(found, offset)

    def _resume_copy(self, offset: int, exclude: int, tail: bytes = b"") -> bool:
        """The file was truncated after being copied: read the copy from `offset` on."""
        found = copied_sibling(self.path, offset, exclude, tail)
        if found is None:
            log.warning("%s was truncated; no copy of its unread lines found", self.path)
            return False
        self._drain_file(found, offset)
        return True

    def _drain_file(self, path: Path, offset: int) -> None:
        fd = os.open(path, os.O_RDONLY)
        f = OpenFile(fd, os.fstat(fd).st_ino, offset)
        try:
            while not self._read(f, MAX_READ_PER_POLL):
                pass
            self._flush_partial(f)
        finally:
            os.close(fd)

    # --- reading -------------------------------------------------------------------------

    def _read(self, f: OpenFile, budget: int) -> bool:
        """Deliver complete lines from `f`; True when its end was reached."""
        while budget > 0:
            data = os.pread(f.fd, min(READ_CHUNK, budget), f.pos)
            if not data:
                return True
            budget -= len(data)
            if f.skip:
                nl = data.find(b"\n")
                if nl < 0:
                    f.skip += len(data)  # still inside the over-long line
                    continue
                # It ends here: the next line starts after its newline.
                f.offset += f.skip + nl + 1
                f.skip = 0
                f.tail = pread_back(f.fd, f.offset)
                data = data[nl + 1 :]
                if not data:
                    continue
            buf = f.buf + data if f.buf else data
            end = buf.rfind(b"\n")
            if end < 0:
                if len(buf) > MAX_LINE_BYTES:
                    self._start_skipping(f, buf)
                else:
                    f.buf = buf
                continue
            complete, f.buf = buf[: end + 1], buf[end + 1 :]
            start = f.offset
            for raw in complete.split(b"\n")[:-1]:
                self.line_at = (f.ino, start)
                start += len(raw) + 1
                if len(raw) > MAX_LINE_BYTES:  # began and ended within this read
                    self._too_long(raw)
                else:
                    self._emit(raw)
            f.offset += len(complete)
            f.tail = (f.tail + complete)[-FINGERPRINT_BYTES:]
            if len(f.buf) > MAX_LINE_BYTES:
                self._start_skipping(f, f.buf)
        return False

    def _start_skipping(self, f: OpenFile, buf: bytes) -> None:
        """`buf` (no newline in it) is already too long: report it, keep none of it."""
        self._too_long(buf)
        f.skip = len(buf)
        f.buf = b""

    def _emit(self, raw: bytes) -> None:
        self.lines += 1
        try:
            self.deliver(raw.decode("utf-8", "replace").rstrip("\r"))
        except Exception:
            # The position must stay exact whatever the callback does: raising out
            # of here would leave half a batch handed over and read again next poll.
            self.deliver_errors += 1
            if _worth_logging(self.deliver_errors):
                log.exception("%s: a line could not be handled (%d so far); skipped",
                              self.path, self.deliver_errors)

    def _too_long(self, raw: bytes) -> None:
        self.lines += 1
        self.too_long_lines += 1
        head = raw[:TOO_LONG_HEAD_BYTES].decode("utf-8", "replace")
        if self.too_long is None:
            if _worth_logging(self.too_long_lines):
                log.warning("%s: a line over %d bytes skipped (%d so far)", self.path,
                            MAX_LINE_BYTES, self.too_long_lines)
            return
        try:
            self.too_long(head)
        except Exception:
            self.deliver_errors += 1
            if _worth_logging(self.deliver_errors):
                log.exception("%s: an over-long line could not be reported", self.path)

    def _flush_partial(self, f: OpenFile) -> None:
        """A file that will not grow any more: its unfinished last line is all there is."""
        if f.skip:  # an over-long last line, already reported
            f.offset += f.skip
            f.skip = 0
        if f.buf:
            self.line_at = (f.ino, f.offset)
            self._emit(f.buf)
            f.offset += len(f.buf)
            f.buf = b""

    # --- rotation ------------------------------------------------------------------------

    def _check_truncated(self, cur: OpenFile) -> None:
        size = os.fstat(cur.fd).st_size
        if size >= cur.offset and (
            not cur.tail or pread_back(cur.fd, cur.offset, len(cur.tail)) == cur.tail
        ):
            return
        log.info("%s was truncated (copytruncate); reading from its start", self.path)
        self._resume_copy(cur.offset, exclude=cur.ino, tail=cur.tail)
        cur.offset, cur.skip, cur.buf, cur.tail = 0, 0, b"", b""

    def _check_rotated(self, cur: OpenFile) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return  # renamed, the new one not created yet: keep reading the old one
        if st.st_ino == cur.ino:
            return
        log.info("%s was rotated; following the new file", self.path)
        self._old.append(cur)
        self._cur = None
        self._open_new()

    def _open_new(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        self._cur = OpenFile(fd, os.fstat(fd).st_ino, 0)
        self._read(self._cur, MAX_READ_PER_POLL)

    def _retire(self, old: OpenFile) -> None:
        self._read(old, MAX_READ_PER_POLL)
        self._flush_partial(old)
        os.close(old.fd)
        self._old.remove(old)

    def _announce(self, cur: OpenFile) -> int:
        """Before reading, save how far this poll may read (`positions.announced`);
        returns the bytes it may read. Only with `hold`: a plain follower's receiver
        does not de-duplicate anyway."""
        if self.hold is None or self.checkpoints is None:
            return MAX_READ_PER_POLL
        budget, pos = announced(cur, self._saved, MAX_READ_PER_POLL)
        if pos is not None:
            self.checkpoints.set_checkpoint(self.name, pos)
            self._saved = pos
        return budget

    def _checkpoint(self, delivered: bool) -> None:
        if self.checkpoints is None or self._cur is None:
            return
        pos = after_poll(self._cur, self.hold)
        if pos == self._saved:
            return
        if delivered and self.commit is not None:
            self.commit()
        self.checkpoints.set_checkpoint(self.name, pos)
        self._saved = pos


def _worth_logging(n: int) -> bool:
    """Problems logged in full: the first few, then one in `PROBLEMS_LOG_EVERY`."""
    return n <= PROBLEMS_LOGGED or not n % PROBLEMS_LOG_EVERY
