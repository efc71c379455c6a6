"""`extrusion report` and `extrusion replay --report`: load, render, write.

The CLI parses arguments and calls `run()`; every problem the user can fix
comes back as a `CommandError` with one line of text and an exit status.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url

from extrusion.config import Config
from extrusion.report.load import Query, ReportError, load_report
from extrusion.report.model import Report
from extrusion.report.times import BadTime, parse_since, zone
from extrusion.scoring.events import State
from extrusion.scoring.store import Store, StoreError, StoreUnavailable

EX_FAILURE = 1  # a report that cannot be made as asked (extrusion.exits)
EX_USAGE = 2  # a bad option value, as click says it (extrusion.exits.EX_CLI_USAGE)
EX_UNAVAILABLE = os.EX_UNAVAILABLE
EX_CANTCREAT = os.EX_CANTCREAT
FORMATS = ("text", "json", "html")


class CommandError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def render(report: Report, fmt: str, cfg: Config) -> str:
    """The report in `fmt` (text, json or html) with the config's presentation settings."""
    tz = zone(cfg.report.timezone)
    if fmt == "text":
        from extrusion.report.text import render_text

        return render_text(report, tz, cfg.report.max_destinations)
    if fmt == "json":
        from extrusion.report.jsonfmt import render_json

        return render_json(report)
    if fmt == "html":
        try:
            from extrusion.report.html import render_html
        except ImportError as exc:
            raise CommandError(
                f"the html format needs matplotlib ({exc.name} is missing): "
                "pip install 'extrusion[report]'",
                EX_UNAVAILABLE,
            ) from None
        return render_html(report, tz, cfg.report.max_destinations, cfg.report.plot_senders)
    raise CommandError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})", EX_USAGE)


def write_output(text: str, out: str | None, stdout: TextIO | None = None) -> None:
    """To `out` (replaced atomically, so a reader never sees half a report) or stdout."""
    if out is None or out == "-":
        (stdout or sys.stdout).write(text)
        return
    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}", EX_CANTCREAT) from None


def _state(value: str | None) -> State | None:
    if value is None:
        return None
    try:
        return State(value.lower())
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise CommandError(f"--state {value!r}: expected one of {names}", EX_USAGE) from None


def open_store(cfg: Config) -> Store:
    """The configured store, read as it is: never created or migrated by a report."""
    url = make_url(cfg.store.url)
    shown = url.render_as_string(hide_password=True)
    file_db = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if file_db and not Path(str(url.database)).is_file():
        raise CommandError(f"no store at {shown} (has a daemon or `extrusion db upgrade` "
                               "run with this config?)", EX_UNAVAILABLE)
    try:
        store = Store(cfg.store.url, busy_timeout_ms=cfg.store.busy_timeout_ms, create=False)
    except StoreError as exc:
        raise CommandError(str(exc), EX_UNAVAILABLE) from None
    try:
        if store.revision() is None:
            raise CommandError(f"the store at {shown} has no extrusion tables "
                               "(run `extrusion db upgrade`)", EX_UNAVAILABLE)
    except StoreUnavailable as exc:
        store.close()
        raise CommandError(f"{shown}: {exc}", EX_UNAVAILABLE) from None
    except BaseException:
        store.close()
        raise
    return store


def run(
    cfg: Config,
    *,
    since: str = "24h",
    sender: str | None = None,
    state: str | None = None,
    fmt: str = "text",
    out: str | None = None,
    clock: Callable[[], float] = time.time,
    stdout: TextIO | None = None,
) -> None:
    """`extrusion report`: the flagged senders of the live store."""
    now = clock()
    try:
        start = parse_since(since, now)
    except BadTime as exc:
        raise CommandError(str(exc), EX_USAGE) from None
    wanted = _state(state)
    if fmt not in FORMATS:
        raise CommandError(f"unknown format {fmt!r}", EX_USAGE)
    q = Query(until=now, since=start, sender=sender, state=wanted,
              max_messages=cfg.report.max_messages_per_sender,
              half_life=cfg.scoring.half_life_seconds, own_domains=cfg.general.own_domains)
    store = open_store(cfg)
    try:
        report = load_report(store, q, generated_at=now,
                             source=make_url(cfg.store.url).render_as_string(hide_password=True))
    except ReportError as exc:
        raise CommandError(str(exc), EX_FAILURE) from None
    except StoreError as exc:
        raise CommandError(str(exc), EX_UNAVAILABLE) from None
    finally:
        store.close()
    write_output(render(report, fmt, cfg), out, stdout)


def report_after_replay(
    store: Store,
    cfg: Config,
    fmt: str = "text",
    out: str | None = None,
    *,
    stdout: TextIO | None = None,
) -> Report:
    """`extrusion replay LOG --report FMT`: the report over everything the replay stored.

    The window is the log's own time: from the beginning to the last event, so
    scores are decayed to the end of the log, not to today.
    """
    if fmt not in FORMATS:
        raise CommandError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})",
                           EX_USAGE)
    last = max((row.last_seen for row in store.senders()), default=time.time())
    q = Query(until=last, since=None, max_messages=cfg.report.max_messages_per_sender,
              half_life=cfg.scoring.half_life_seconds, own_domains=cfg.general.own_domains)
    report = load_report(store, q, source="replay")
    write_output(render(report, fmt, cfg), out, stdout)
    return report


def replay_reporter(cfg: Config, fmt: str, out: str | None = None) -> Callable[[Store], None]:
    """The `after` hook `extrusion replay --report FMT` hands to the replay.

    A problem writing the report ends the replay like any other replay error
    (one line, the exit status of the problem).
    """
    from extrusion.replay.errors import ReplayError

    def after(store: Store) -> None:
        try:
            report_after_replay(store, cfg, fmt, out)
        except CommandError as exc:
            raise ReplayError(f"--report: {exc}", exc.status) from None

    return after
