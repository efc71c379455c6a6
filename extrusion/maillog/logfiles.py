"""Open MTA logs for reading: plain or gzip (by content), `-` for standard input.

Bytes that are not UTF-8 are replaced, never fatal; a file that cannot be
read to its end (a cut gzip stream) ends the input with the reason. A line
longer than `lines.MAX_LINE` is never read whole: its start is handed on
(the feed counts it as garbled by its length) and the rest dropped in
bounded pieces up to its newline.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, TextIO, cast

from extrusion.maillog.lines import MAX_LINE

GZIP_MAGIC = b"\x1f\x8b"
# Characters read for a line at most: a longer one is cut here (with its newline,
# a line of MAX_LINE characters still fits).
_READ_LIMIT = MAX_LINE + 2
STDIN = "-"


def open_log(path: str, stack: ExitStack) -> TextIO:
    """A text stream of the log: stdin for `-`, gunzipped when the content is gzip.
    Raises OSError when the file cannot be opened."""
    if path == STDIN:
        raw: IO[bytes] = sys.stdin.buffer
    else:
        raw = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by the stack
    # peek() needs a buffered reader; stdin may be a plain byte stream.
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(
        cast(io.RawIOBase, raw))
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        unpacked = gzip.GzipFile(fileobj=buffered, mode="rb")
        return io.TextIOWrapper(unpacked, encoding="utf-8", errors="replace")
    return io.TextIOWrapper(buffered, encoding="utf-8", errors="replace")


def read_lines(logs: list[str], errors: list[str]) -> Iterator[str]:
    """Every line of every log in order; a read error ends it and is put in `errors`."""
    n = 0
    for path in logs:
        with ExitStack() as one:
            try:
                stream = open_log(path, one)
                for line in iter(functools.partial(stream.readline, _READ_LIMIT), ""):
                    if len(line) == _READ_LIMIT and line[-1] != "\n":
                        _skip_rest_of_line(stream)
                    n += 1
                    yield line
            except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
                errors.append(f"{path}: unreadable after line {n:,}: {exc}")
                return


def _skip_rest_of_line(stream: TextIO) -> None:
    """Read past the end of an over-long line, a bounded piece at a time."""
    while (piece := stream.readline(_READ_LIMIT)) and piece[-1] != "\n":
        pass


def reference_time(paths: list[str]) -> float:
    """Anchor for the year of classic stamps: when the first file was last written."""
    for p in paths:
        if p != STDIN:
            try:
                return os.stat(p).st_mtime
            except OSError:
                break
    return time.time()
