"""`[flows] enabled`: the policy daemon (`serve`, `policyd`) follows pmacct's output.

Like the mail log's `FileFeedService` (both are `extrusion.poller.EnginePoller`):
every `poll_seconds` a worker thread reads what sfacctd appended, gives the
findings to the engine, flushes and saves the checkpoint; nothing runs before
the engine is open (the records wait in the file, the checkpoint says where we
were).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from extrusion.config import Config
from extrusion.poller import EnginePoller

log = logging.getLogger("extrusion.flows")


class FlowFeedService(EnginePoller):
    def __init__(self, config: Config, engines: Any, reactor: Any) -> None:
        super().__init__(engines, reactor, config.flows.poll_seconds, log, "flow follower")
        self.config = config
        self.follower: Any = None
        self._pending: Config | None = None  # a reloaded config, for the next poll
        self._pending_lock = threading.Lock()  # set by the reactor, taken by the poll

    def reload(self, config: Config) -> None:
        """SIGHUP, validated config: applied by the polling thread before its next read,
        so a record is never judged half by the old settings and half by the new."""
        with self._pending_lock:
            self._pending = config

    def _poll(self, engine: Any) -> int:
        """Worker thread."""
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            if self.follower is not None:
                self.follower.configure(pending)
            self.config = pending
            log.info("flows: reloaded (min_destinations %d, min_networks %d, sampling 1:%d)",
                     pending.flows.min_destinations, pending.flows.min_networks,
                     pending.flows.sampling_rate)
        if self.follower is None:
            from extrusion.flows.follow import FlowFollower

            self.follower = FlowFollower(self.config, engine)
            log.info("following flow records in %s", self.config.flows.path)
        n: int = self.follower.poll()
        return n

    def _failed(self, failure: Any) -> None:
        # A missing file or a store hiccup: say so, keep polling (the follower resumes).
        log.warning("flow follower: %s", failure.getErrorMessage())
