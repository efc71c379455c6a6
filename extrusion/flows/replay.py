"""`extrusion flows replay FILES`: pmacct's recorded output through a fresh engine.

What-if on history, as `extrusion replay` does for mail logs: the records'
own times are the engine's clock, the store is a throw-away SQLite file
unless `--store` names one, and every state change is reported.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from extrusion.config import Config
from extrusion.flows.feed import FlowFeed, FlowStats
from extrusion.replay.input import read_lines
from extrusion.scoring.events import FlowEvidence, StateChange

# A replay is one batch: the engine never flushes from a background thread.
NEVER = 1 << 62


@dataclass
class FlowReplayResult:
    stats: FlowStats
    changes: list[StateChange] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    final: dict[str, str] = field(default_factory=dict)  # sender -> state at the end


def replay(config: Config, files: list[str], *, store_url: str | None = None,
           on_change: Callable[[StateChange], None] | None = None) -> FlowReplayResult:
    from extrusion.scoring.engine import Engine
    from extrusion.scoring.store import Store

    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="extrusion-flows-"))
        store_cfg = dataclasses.replace(
            config.store, url=store_url or f"sqlite:///{tmp}/replay.db",
            spool_dir=config.store.spool_dir if store_url else os.path.join(tmp, "spool"),
            flush_batch=NEVER)
        cfg = dataclasses.replace(config, store=store_cfg)
        clock = [0.0]
        store = Store(store_cfg.url, busy_timeout_ms=store_cfg.busy_timeout_ms,
                      durable=store_url is not None)
        engine = Engine(cfg, store, lambda: clock[0], own_store=True)
        stack.callback(engine.close)
        changes: list[StateChange] = []

        def listener(change: StateChange) -> None:
            changes.append(change)
            if on_change is not None:
                on_change(change)

        engine.add_listener(listener)

        class _Clocked:
            """The engine, its clock set to each finding's time first."""

            def direct_sending(self, event: FlowEvidence) -> None:
                clock[0] = max(clock[0], event.time)
                engine.direct_sending(event)

        feed = FlowFeed(_Clocked(), cfg)
        errors: list[str] = []
        for line in read_lines(files, errors):
            feed.line(line.rstrip("\n"))
        engine.flush()
        final = {row.key: row.state for row in store.senders()}
        return FlowReplayResult(feed.stats, changes, dict(feed.analysis.skipped), errors, final)
