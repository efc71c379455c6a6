"""What `extrusion replay` reads: plain, gzip, bzip2 or xz logs (by content), `-` for stdin.

Compression is recognised by the file's first bytes, not its name, so a
rotated `mail.log.2` that is really gzip, or an `.xz` renamed, still reads.
Before the replay starts each file is looked at (`refuse`): a directory, a
file that cannot be opened, binary data, or text in which none of the first
lines reads as a log line is refused with one line, instead of replaying it
as "0 parsed". `Position` says how far through the files the reading is, in
bytes on disk, for the progress line.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import lzma
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import IO, TextIO, cast

from extrusion.exits import EX_DATAERR, EX_NOINPUT
from extrusion.maillog.lines import MAX_LINE

STDIN = "-"
# Characters read for a line at most: a longer one is cut here (with its newline, a line
# of MAX_LINE characters still fits).
_READ_LIMIT = MAX_LINE + 2
GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
MAGIC_BYTES = 6
# What `refuse` reads of each file: enough lines to meet a log line among other noise,
# never more than this many bytes of it.
SNIFF_LINES = 200
SNIFF_BYTES = 1 << 20
# Text has few control characters besides tab, CR, LF and FF; binary data has many.
BINARY_SHARE = 0.1
_TEXT_CONTROLS = frozenset(b"\t\n\r\f")
_CONTROL = frozenset(range(32)) - _TEXT_CONTROLS | {127}


class NotALog(Exception):
    """An input that is no log; one line for the terminal and the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _unpacked(buffered: io.BufferedReader) -> IO[bytes]:
    magic = buffered.peek(MAGIC_BYTES)[:MAGIC_BYTES]
    if magic[:2] == GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
    if magic[:3] == BZIP2_MAGIC:
        return cast(IO[bytes], bz2.BZ2File(buffered, mode="rb"))
    if magic[:6] == XZ_MAGIC:
        return cast(IO[bytes], lzma.LZMAFile(buffered, mode="rb"))
    return buffered


def open_log(path: str, stack: ExitStack) -> tuple[TextIO, IO[bytes]]:
    """A text stream of the log (unpacked as its content says) and the file it reads, whose
    position is the progress through it. Raises OSError when it cannot be opened."""
    if path == STDIN:
        raw: IO[bytes] = sys.stdin.buffer
    else:
        raw = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by the stack
    # peek() needs a buffered reader; stdin may be a plain byte stream.
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(
        cast(io.RawIOBase, raw))
    stream = io.TextIOWrapper(_unpacked(buffered), encoding="utf-8", errors="replace")
    return stream, raw


class Position:
    """Bytes of the input files read so far, and their total size (0: unknown, stdin)."""

    def __init__(self, logs: list[str]) -> None:
        sizes = [os.stat(p).st_size if p != STDIN else 0 for p in logs]
        self.total = 0 if STDIN in logs else sum(sizes)
        self._done = 0  # bytes of the files finished
        self._current: IO[bytes] | None = None

    def enter(self, raw: IO[bytes]) -> None:
        self._current = raw

    def leave(self, size: int) -> None:
        self._done += size
        self._current = None

    def bytes(self) -> int:
        current = self._current
        if current is None or current is sys.stdin.buffer:
            return self._done
        try:
            return self._done + current.tell()
        except (OSError, ValueError):
            return self._done


def read_lines(logs: list[str], errors: list[str],
               position: Position | None = None) -> Iterator[str]:
    """Every line of every log in order; a read error ends it and is put in `errors`."""
    n = 0
    for path in logs:
        with ExitStack() as one:
            try:
                stream, raw = open_log(path, one)
                if position is not None:
                    position.enter(raw)
                # Bounded reads: a line longer than MAX_LINE is never held whole; its
                # start goes on (the feed counts it unreadable by its length).
                for line in iter(functools.partial(stream.readline, _READ_LIMIT), ""):
                    if len(line) == _READ_LIMIT and line[-1] != "\n":
                        _skip_rest_of_line(stream)
                    n += 1
                    yield line
            except (OSError, EOFError, lzma.LZMAError) as exc:  # BadGzipFile is an OSError
                errors.append(f"{path}: unreadable after line {n:,}: {exc}")
                return
            if position is not None:
                position.leave(os.stat(path).st_size if path != STDIN else 0)


def _skip_rest_of_line(stream: TextIO) -> None:
    """Read past the end of an over-long line, a bounded piece at a time."""
    while (piece := stream.readline(_READ_LIMIT)) and piece[-1] != "\n":
        pass


def _binary(sample: bytes) -> bool:
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b in _CONTROL)
    return bool(sample) and controls / len(sample) > BINARY_SHARE


def refuse(path: str, readable: Callable[[list[str]], bool]) -> None:
    """Raise NotALog unless `path` looks like a log: `readable(lines)` says whether any of
    the first non-empty lines reads as one (the feed's own line reader decides)."""
    if os.path.isdir(path):
        raise NotALog(f"{path}: is a directory (name the log files in it)", EX_NOINPUT)
    if not os.path.exists(path):
        raise NotALog(f"{path}: no such file", EX_NOINPUT)
    with ExitStack() as stack:
        try:
            stream, _raw = open_log(path, stack)
            raw_text = stream.buffer.read(SNIFF_BYTES)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            status = EX_NOINPUT if isinstance(exc, PermissionError) else EX_DATAERR
            raise NotALog(f"{path}: cannot be read: {exc.strerror or exc}"
                          if isinstance(exc, OSError) and exc.strerror
                          else f"{path}: cannot be read: {exc}", status) from None
    if _binary(raw_text):
        raise NotALog(f"{path}: not a log: binary data", EX_DATAERR)
    lines = [line for line in raw_text.decode("utf-8", "replace").splitlines()
             if line.strip()][:SNIFF_LINES]
    if lines and not readable(lines):
        raise NotALog(f"{path}: not a log: none of its first {len(lines)} lines reads as a "
                      "syslog line (timestamp, host, program)", EX_DATAERR)
