"""`extrusion replay LOG...`: historical MTA logs through the real engine (what-if tuning).

The log's own timestamps are the engine's clock, so windows, decay and
rate limits behave as they would have on the day. By default the engine
writes to a throw-away SQLite file (and spool) in a temporary directory, so
the live store is never touched; `--store URL` writes where the operator says.

Output: with `--json`, exactly one JSON object per state change on stdout
(`{"time", "sender", "state", "score", "reason"}`), and in the same stream,
when the engine finds one, an object with `"state": "misconfigured"` for a
rejection daemon (auto-replies sent without <> that failed: reported, never
throttled); nothing else there;
otherwise a summary table. A progress line goes to stderr when it is a
terminal (lines, MB/s, ETA). Inputs are plain, gzip, bzip2 or xz files
(recognised by content, `replay.input`), read in the order given; `-` is
standard input. Input that is no log (a directory, binary data, text without
a single log line) is refused with one line before anything runs.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from itertools import islice
from typing import TYPE_CHECKING, Any, TextIO

from extrusion.config import Config, check_store_url
from extrusion.exits import EX_CLI_USAGE, EX_DATAERR, EX_OK
from extrusion.maillog.feed import LogFeed
from extrusion.maillog.feedsink import FeedStats
from extrusion.maillog.joinstate import JoinSettings
from extrusion.maillog.timestamps import log_zone
from extrusion.replay.errors import ReplayError
from extrusion.replay.input import STDIN, NotALog, Position, read_lines, refuse
from extrusion.replay.logfiles import reference_time
from extrusion.replay.output import (
    Progress,
    ReplayResult,
    final_states,
    json_line,
    notice_line,
    summary,
)
from extrusion.replay.parallel import FLUSH_EVERY_LINES, reader_process, run_parallel
from extrusion.scoring.events import (
    ClientEvidence,
    Notice,
    Outcome,
    Refused,
    State,
    StateChange,
    Submission,
)

if TYPE_CHECKING:
    from extrusion.scoring.engine import Engine
    from extrusion.scoring.store import Store

# Exit statuses: EX_CLI_USAGE for a bad option value (as click says it), EX_DATAERR for an
# input that is no log or could not be read to its end, EX_NOINPUT (replay.input) for an
# input file that does not exist, is a directory or cannot be opened, EX_SOFTWARE when the
# reader died (replay.parallel).
PROGRESS_EVERY_LINES = 1 << 12
NEVER = 1 << 62
# Allocations between collections of the youngest generation (Python's default: 700).
# At 10,000 a two-day log's engine collected 57 times and spent 0.78 s in the collector;
# at 50,000, 11 times and 0.32 s (no more memory: what survives is the same).
GC_YOUNG_THRESHOLD = 50_000


def replay(
    config: Config,
    logs: list[str],
    *,
    as_json: bool = False,
    store_url: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    progress: bool | None = None,
    after: Callable[..., None] | None = None,
    parallel: bool | None = None,
) -> int:
    """Run the replay and print its output; returns the exit status.

    `after(store)` runs once the logs are in, while the replay's store is still
    open (`extrusion.cli.replay_reporter` for `--report`)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if store_url is not None and (problem := check_store_url(store_url)):
        err.write(f"extrusion replay: --store: {problem}\n")
        return EX_CLI_USAGE
    if logs.count(STDIN) > 1:
        err.write("extrusion replay: standard input (-) can be read only once\n")
        return EX_CLI_USAGE
    readable = _reads_as_log(config)
    try:
        for path in logs:
            if path != STDIN:
                refuse(path, readable)
    except NotALog as exc:
        err.write(f"extrusion replay: {_printable(str(exc))}\n")
        return exc.status

    def emit(change: StateChange) -> None:
        out.write(json_line(change) + "\n")

    def emit_notice(notice: Notice) -> None:
        out.write(notice_line(notice) + "\n")

    try:
        result, stats = run(config, logs, store_url=store_url,
                            on_change=emit if as_json else None,
                            on_notice=emit_notice if as_json else None,
                            progress=Progress(err, err.isatty() if progress is None else progress),
                            after=after, parallel=parallel)
    except ReplayError as exc:
        err.write(f"extrusion replay: {exc}\n")
        return exc.status
    summary(result, stats, err if as_json else out)
    if result.error:
        err.write(f"extrusion replay: {_printable(result.error)}\n")
        return EX_DATAERR
    if stats.lines and not stats.parsed + stats.ignored:
        # Standard input is not looked at beforehand: this is where it is refused.
        err.write(f"extrusion replay: not a log: none of its {stats.lines:,} lines reads as "
                  "a syslog line\n")
        return EX_DATAERR
    return EX_OK


def _printable(text: str) -> str:
    from extrusion.report.clean import clean

    return clean(text)


class _Nobody:
    """An engine that hears nothing: `_reads_as_log` wants only the feed's line counts."""

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        return client_addr

    def submission(self, event: Submission) -> None:
        pass

    def outcome(self, event: Outcome) -> None:
        pass

    def refused(self, event: Refused) -> None:
        pass

    def evidence(self, event: ClientEvidence) -> None:
        pass


def _reads_as_log(config: Config) -> Callable[[list[str]], bool]:
    """Whether any of some lines reads as a log line, by the feed's own line reader."""

    def readable(lines: list[str]) -> bool:
        # Default join settings: this host's names (which may take `postconf` a second)
        # decide whose lines they are, not whether they read as log lines.
        feed = LogFeed(_Nobody(), fmt=config.maillog.format, settings=JoinSettings(),
                       reference_time=time.time(), tz=log_zone(config.maillog.timezone),
                       guard=False)
        for line in lines:
            feed.line(line)
        return feed.stats.parsed + feed.stats.ignored > 0

    return readable


def run(
    config: Config,
    logs: list[str],
    *,
    store_url: str | None = None,
    on_change: Callable[[StateChange], None] | None = None,
    on_notice: Callable[[Notice], None] | None = None,
    progress: Progress | None = None,
    after: Callable[..., None] | None = None,
    parallel: bool | None = None,
) -> tuple[ReplayResult, FeedStats]:
    """Feed the logs through a fresh engine; the result holds every state change and the
    final state of each sender the engine judged.

    With `parallel` (the default when there are two cores and no `-` among the logs) a
    child process reads and parses while this one runs the engine; the results are the
    same either way."""
    if parallel is None:
        parallel = STDIN not in logs and (os.cpu_count() or 1) > 1
    result = ReplayResult()
    reference = reference_time(logs)
    position = Position(logs)
    if progress is not None:
        progress.total_bytes = position.total
    with ExitStack() as stack:
        stack.enter_context(_fewer_collections())
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="extrusion-replay-"))
        cfg = _replay_config(config, store_url, tmp)
        # The reader starts first: its start-up and first lines overlap with loading the
        # engine (SQLAlchemy, Alembic: a quarter of a second) and opening the store.
        worker = (
            stack.enter_context(reader_process(cfg, logs, reference)) if parallel else None
        )
        # The engine's "now" is the log's: the latest stamp read when the event was made.
        clock_box = [reference]
        engine, store = _open_engine(cfg, durable=store_url is not None, clock_box=clock_box,
                                     rows=store_url is not None or after is not None)
        stack.callback(engine.close)

        flagged, tick = _listen(engine, result, on_change, on_notice, progress)
        started = time.perf_counter()
        # Nobody else reads the throw-away store: its indexes are built once, at the end,
        # and only if a report is going to read it.
        with (nullcontext() if store_url is not None
              else store.deferred_indexes(build=after is not None)):
            try:
                if worker is not None:
                    stats = run_parallel(worker, engine, clock_box, result, tick)
                else:
                    stats = _run_inline(cfg, logs, reference, engine, clock_box, result, tick,
                                        position)
            finally:
                if progress is not None:
                    progress.done(result.lines, len(flagged))
            engine.flush()
        result.seconds = time.perf_counter() - started
        final_states(result, store, cfg.scoring.half_life_seconds, clock_box[0])
        if after is not None:
            after(store)  # before the throw-away store goes
    return result, stats


def _replay_config(config: Config, store_url: str | None, tmp: str) -> Config:
    """`config` with the store a replay writes to: a throw-away SQLite file in `tmp`
    unless `--store URL` names one."""
    store_cfg = dataclasses.replace(
        config.store,
        url=store_url or f"sqlite:///{tmp}/replay.db",
        spool_dir=config.store.spool_dir if store_url else os.path.join(tmp, "spool"),
        # Never flushed from a background thread: that would read the clock at a
        # moment the thread scheduler picks, and two runs would differ.
        flush_batch=NEVER,
    )
    return dataclasses.replace(config, store=store_cfg)


def _open_engine(cfg: Config, *, durable: bool, clock_box: list[float],
                 rows: bool = True) -> tuple[Engine, Store]:
    """A fresh engine on the replay's store, its clock read from `clock_box`; without
    `rows` it makes no message, recipient, counter or baseline rows."""
    from extrusion.scoring.engine import Engine
    from extrusion.scoring.store import Store

    # The throw-away store needs no durability (--store URL gets the usual care).
    store = Store(cfg.store.url, busy_timeout_ms=cfg.store.busy_timeout_ms, durable=durable)
    engine = Engine(cfg, store, lambda: clock_box[0], own_store=True)
    # The log is the whole evidence and this engine its only reader: an outcome whose
    # message it did not see (the log starts after it) is final, not a store look-up
    # (a scan of the unindexed throw-away store) nor 300 s of waiting.
    engine.memory_is_whole = True
    # Messages, recipients, counters and baselines of a throw-away store are read only by
    # a report: without one they are never made (about half of the engine's work).
    engine.keeps_rows = rows
    # Flushed after fixed numbers of lines (FLUSH_EVERY_LINES), never by the batch's size.
    engine.flushes_when_full = False
    return engine, store


def _listen(
    engine: Any,
    result: ReplayResult,
    on_change: Callable[[StateChange], None] | None,
    on_notice: Callable[[Notice], None] | None,
    progress: Progress | None,
) -> tuple[set[str], Callable[[int, int], None]]:
    """Record the engine's state changes in `result`; returns the senders flagged right
    now (kept current for the progress line) and the tick the readers call."""
    flagged: set[str] = set()

    def listener(change: StateChange) -> None:
        result.changes.append(change)
        if change.new is State.OK:
            flagged.discard(change.sender)
        else:
            flagged.add(change.sender)
        if on_change is not None:
            on_change(change)

    def tick(lines: int, done_bytes: int) -> None:
        result.lines = lines
        if progress is not None:
            progress.update(lines, len(flagged), done_bytes)

    engine.add_listener(listener)
    if on_notice is not None:
        engine.add_notice_listener(on_notice)
    return flagged, tick


def _run_inline(cfg: Config, logs: list[str], reference: float, engine: Any,
                clock_box: list[float], result: ReplayResult,
                tick: Callable[[int, int], None], position: Position) -> FeedStats:
    """Parse and judge in this process (stdin, one core)."""
    joiner: list[Any] = []

    class Clocked:
        """The engine, told the log time before each event."""

        def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
            return str(engine.sender_key(client_addr=client_addr, sasl_user=sasl_user))

        def submission(self, event: Submission) -> None:
            clock_box[0] = joiner[0].now or clock_box[0]
            engine.submission(event)

        def outcome(self, event: Outcome) -> None:
            clock_box[0] = joiner[0].now or clock_box[0]
            engine.outcome(event)

        def refused(self, event: Refused) -> None:
            clock_box[0] = joiner[0].now or clock_box[0]
            engine.refused(event)

        def evidence(self, event: ClientEvidence) -> None:
            clock_box[0] = joiner[0].now or clock_box[0]
            engine.evidence(event)

    feed = LogFeed.from_config(Clocked(), cfg, reference_time=reference, guard=False)
    joiner.append(feed.joiner)
    errors: list[str] = []
    n = 0
    lines = read_lines(logs, errors, position)
    # By batches (LogFeed.lines: the common line without a call per step); a batch ends
    # where the progress line and the engine's flush came after a line before.
    while batch := list(islice(lines, PROGRESS_EVERY_LINES)):
        feed.lines(batch)
        n += len(batch)
        if not n % PROGRESS_EVERY_LINES:
            if not n % FLUSH_EVERY_LINES:
                engine.flush()
            tick(n, position.bytes())
    feed.finish()
    tick(n, position.bytes())
    result.error = errors[0] if errors else ""
    return feed.stats


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often while replaying.

    The engine keeps up to 200,000 recent messages (several objects each) and
    every event allocates a few more that die young. At the default threshold
    the collector ran over a thousand times in a replay of 160,000 events and
    walked the message tracker again in each full collection: a sixth of the
    engine's time, reclaiming almost nothing. Restored afterwards.
    """
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
    try:
        yield
    finally:
        gc.set_threshold(young, *older)
