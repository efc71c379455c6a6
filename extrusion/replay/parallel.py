"""The replay's log reader in a child process (`extrusion.replay.reader`).

With two cores, one process reads and parses the logs while the other runs
the engine; the events cross a pipe as pickles. This is the engine's side
of that pipe: starting the child, widening the pipe, judging what arrives.
"""

from __future__ import annotations

import fcntl
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

from extrusion.config import Config
from extrusion.maillog.feedsink import FeedStats
from extrusion.replay.errors import EX_SOFTWARE, ReplayError
from extrusion.replay.output import ReplayResult

# The engine's queue is written every this many lines (in the replay's own thread).
FLUSH_EVERY_LINES = 1 << 15
# Bytes the log reader may write ahead of the engine (Linux's default pipe: 64 KiB).
PIPE_BYTES = 1 << 20


@contextmanager
def reader_process(cfg: Config, logs: list[str],
                   reference: float) -> Iterator[subprocess.Popen[bytes]]:
    """The child process that reads and parses the logs (`extrusion.replay.reader`);
    killed if this side stops before reading it to its end."""
    with subprocess.Popen(
        [sys.executable, "-m", "extrusion.replay.reader", *logs],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:
        widen(proc.stdout)
        # Its settings follow it down its standard input: this host's names may take
        # `postconf` a second (Postfix installed but not configured), which the child's
        # start and this process's opening of the engine then overlap.
        sender = threading.Thread(target=_send_settings, args=(cfg, reference, proc.stdin),
                                  name="extrusion-replay-settings", daemon=True)
        sender.start()
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()  # nobody will read the rest of its output
            sender.join()


def _send_settings(cfg: Config, reference: float, pipe: IO[bytes] | None) -> None:
    """The reader's settings into its standard input, which is then closed (a reader
    that got none fails, and `run_parallel` says so)."""
    from extrusion.maillog.feed import join_settings
    from extrusion.replay.worker import WorkerSettings

    if pipe is None:
        return
    try:
        settings = WorkerSettings(
            fmt=cfg.maillog.format, join=join_settings(cfg), timezone=cfg.maillog.timezone,
            reference_time=reference, customers=cfg.customers,
            flush_every_lines=FLUSH_EVERY_LINES,
        )
        with suppress(OSError):  # the reader is gone already
            pickle.dump(settings, pipe)
    finally:
        with suppress(OSError):
            pipe.close()


def widen(pipe: IO[bytes] | None) -> None:
    """Let the reader run further ahead than the default 64 KiB pipe allows (a fraction of
    one batch), so that it keeps parsing while the engine writes to the store."""
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    # Above the system's limit (fs.pipe-max-size) the default stays.
    with suppress(OSError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def run_parallel(proc: subprocess.Popen[bytes], engine: Any, clock_box: list[float],
                  result: ReplayResult, tick: Callable[[int, int], None]) -> FeedStats:
    """The child process parses; this one decodes its events and judges them."""
    from extrusion.replay.worker import (
        decode_evidence,
        decode_outcome,
        decode_refused,
        decode_submission,
    )

    assert proc.stdout is not None and proc.stderr is not None
    stats: FeedStats | None = None
    done_bytes = 0
    submission, outcome, flush = engine.submission, engine.outcome, engine.flush
    try:
        while stats is None:
            try:
                message = pickle.load(proc.stdout)
            except EOFError:
                break
            if message[0] == "end":
                _kind, lines, stats, error = message
                result.error = error
                tick(lines, done_bytes)
                break
            done_bytes = message[2]
            # By the item's kind, most frequent first: no event is built only to be
            # told apart by isinstance().
            for item in message[3]:
                kind = item[0]
                if kind == "F":
                    flush()
                    continue
                clock_box[0] = item[1] or clock_box[0]
                if kind == "O":
                    outcome(decode_outcome(item))
                elif kind == "S":
                    submission(decode_submission(item))
                elif kind == "R":
                    engine.refused(decode_refused(item))
                else:
                    engine.evidence(decode_evidence(item))
            tick(message[1], done_bytes)
    finally:
        proc.stdout.close()
        problem = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        status = proc.wait()
    if stats is None or status != 0:
        detail = problem.splitlines()[-1] if problem else f"exit status {status}"
        raise ReplayError(f"the log reader failed: {detail}", EX_SOFTWARE)
    return stats
