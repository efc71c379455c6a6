"""`[flows] enabled`: the policy daemon (`serve`, `policyd`) follows pmacct's output.

Like the mail log's `FileFeedService` (both are `extrusion.poller.EnginePoller`):
every `poll_seconds` a worker thread reads what sfacctd appended, gives the
findings to the engine, flushes and saves the checkpoint; nothing runs before
the engine is open (the records wait in the file, the checkpoint says where we
were).
"""

from __future__ import annotations

import logging
from typing import Any

from extrusion.config import Config
from extrusion.poller import EnginePoller

log = logging.getLogger("extrusion.flows")


class FlowFeedService(EnginePoller):
    def __init__(self, config: Config, engines: Any, reactor: Any) -> None:
        super().__init__(engines, reactor, config.flows.poll_seconds, log, "flow follower")
        self.config = config

    def _poll(self, engine: Any) -> int:
        """Worker thread."""
        if self.follower is None:
            from extrusion.flows.follow import FlowFollower

            self.follower = FlowFollower(self.config, engine)
            log.info("following flow records in %s", self.config.flows.path)
        n: int = self.follower.poll()
        return n

    def _failed(self, failure: Any) -> None:
        # A missing file or a store hiccup: say so, keep polling (the follower resumes).
        log.warning("flow follower: %s", failure.getErrorMessage())
