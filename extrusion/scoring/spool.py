"""The local spool: batches the store could not take, kept on disk until it can.

One batch per file (JSON), written to a temporary name, fsynced and renamed,
so a crash never leaves half a batch. Files are replayed oldest first. Several
processes may share one spool directory: a replayer holds an exclusive lock
on a file while writing it to the store and removes it before unlocking, and
checks after locking that the file is still there (another process may have
just finished it). A file that is not a valid batch is renamed `*.bad` and
reported; it is never deleted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from extrusion.scoring.rows import Batch

log = logging.getLogger("extrusion.scoring")

SUFFIX = ".batch.json"
BAD_SUFFIX = ".bad"


class SpoolError(Exception):
    """The spool itself cannot be written (disk full, permissions)."""


class Spool:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self._seq = 0

    def write(self, batch: Batch) -> Path:
        """Keep `batch` durably; raises SpoolError if even that is impossible."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
            tmp = self.dir / f".{name}.tmp"
            data = batch.to_json().encode()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            final = self.dir / name
            os.rename(tmp, final)
            return final
        except OSError as exc:
            raise SpoolError(f"cannot write spool in {self.dir}: {exc.strerror or exc}") from exc

    def files(self) -> list[Path]:
        """Spooled batches, oldest first; none when the directory is missing or unusable
        (writing to it then fails loudly, and the engine keeps the batch in memory)."""
        try:
            return sorted(p for p in self.dir.iterdir() if p.name.endswith(SUFFIX))
        except OSError:
            return []

    def __len__(self) -> int:
        return len(self.files())

    def bad_files(self) -> list[Path]:
        try:
            return sorted(p for p in self.dir.iterdir() if p.name.endswith(BAD_SUFFIX))
        except OSError:
            return []

    def replay(self, write: Callable[[Batch], object]) -> int:
        """Hand every spooled batch to `write`, oldest first; returns how many went.

        Stops at the first batch `write` raises on (the store is still down):
        that file and the ones after it stay for the next attempt. An exception
        with a `remainder` batch says part of the file was written: the file is
        replaced by the remainder, so that nothing is written twice.
        """
        done = 0
        for path in self.files():
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # another process replayed it
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another process is replaying it right now
                try:
                    if os.stat(path).st_ino != os.fstat(fd).st_ino:
                        continue
                except FileNotFoundError:
                    continue
                batch = self._read(path, fd)
                if batch is None:
                    continue
                try:
                    write(batch)  # raises when the store is still down: the file stays
                except Exception as exc:
                    remainder = getattr(exc, "remainder", None)
                    if isinstance(remainder, Batch):
                        self._replace(path, remainder)
                    raise
                os.unlink(path)
                done += 1
            finally:
                os.close(fd)
        return done

    def _replace(self, path: Path, batch: Batch) -> None:
        """Rewrite a locked spool file in place (a new file renamed over it): other
        replayers check the inode after locking, so none takes the old contents."""
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, batch.to_json().encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)

    def _read(self, path: Path, fd: int) -> Batch | None:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        try:
            return Batch.from_json(b"".join(chunks).decode())
        except (ValueError, KeyError, TypeError) as exc:
            bad = path.with_name(path.name + BAD_SUFFIX)
            os.rename(path, bad)
            log.error("spool file %s is not a valid batch (%s); kept as %s", path, exc, bad)
            return None
