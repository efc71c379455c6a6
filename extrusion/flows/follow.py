"""pmacct's output file followed live: `FileFollower` (rotation-safe, checkpointed in
the store) delivering to a `FlowFeed`, and the border export regenerated on change."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from extrusion.config import Config
from extrusion.flows import export
from extrusion.flows.feed import CHECKPOINT_PREFIX, FlowFeed
from extrusion.maillog.follow import FileFollower
from extrusion.scoring.engine import store_of

log = logging.getLogger("extrusion.flows")

# The export is also regenerated this often without new findings: states fall back as
# evidence decays, and operators release or allow senders.
REGENERATE_SECONDS = 60.0
# [flows] keys a reload cannot apply to a running follower.
RESTART_KEYS = ("enabled", "path", "start_at", "poll_seconds")


class FlowFollower:
    """One poll reads what sfacctd appended, feeds the engine, flushes, checkpoints."""

    def __init__(self, config: Config, engine: Any) -> None:
        f = config.flows
        self.config = config
        self.engine = engine
        self.feed = FlowFeed(engine, config)
        self.follower = FileFollower(
            f.path, self.feed.line, checkpoints=store_of(engine),
            name=CHECKPOINT_PREFIX + os.path.abspath(f.path), start_at=f.start_at,
            commit=engine.flush, too_long=self.feed.too_long)
        self._findings_exported = -1
        self._exported_at = 0.0

    def configure(self, config: Config) -> None:
        """A reloaded config (SIGHUP), in the polling thread: the analysis takes the new
        ranges, allow lists, sampling and thresholds; the export is rewritten with them.
        The file followed is the one opened at start."""
        for key in RESTART_KEYS:
            if getattr(self.config.flows, key) != getattr(config.flows, key):
                log.warning("reload: flows.%s changed; restart to apply it", key)
        self.config = config
        self.feed.configure(config)
        self._findings_exported = -1  # the allow list may have changed what is exported

    def poll(self) -> int:
        n = self.follower.poll()
        if self.config.flows.export_path and (
                self.feed.stats.findings != self._findings_exported
                or time.monotonic() - self._exported_at >= REGENERATE_SECONDS):
            self.regenerate()
        return n

    def regenerate(self) -> bool:
        """Rewrite [flows] export_path if the list changed (after a finding, or at start)."""
        f = self.config.flows
        self.engine.flush()  # the states the export reads are the store's
        addrs = export.addresses(self.engine.store, self.config)
        changed = export.write_if_changed(f.export_path,
                                          export.render(addrs, self.config, f.export_format))
        self._findings_exported = self.feed.stats.findings
        self._exported_at = time.monotonic()
        if changed:
            log.info("%s: %d addresses for the border", f.export_path, len(addrs))
        return changed

    def close(self) -> None:
        self.follower.close()
