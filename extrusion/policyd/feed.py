"""The live outcome feed: MTA log lines into the engine as they are written.

[maillog] source = "file" follows the log file, "syslog" receives datagrams;
both hand each line to the maillog package's `LogFeed`, which parses and
joins it and records submissions and outcomes on the engine.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.application.service import Service

from extrusion.config import Config
from extrusion.policyd.engineservice import EngineService
from extrusion.policyd.metrics import Metrics

log = logging.getLogger("extrusion.policyd.feed")


def make_feed_service(
    config: Config, engines: EngineService, reactor: Any, metrics: Metrics
) -> Service | None:
    """The feed service for `config`, or None when there is nothing to follow."""
    if config.maillog.source == "none":
        return None
    log.warning(
        "[maillog] source = %r: the log follower is not built yet; no outcomes are read",
        config.maillog.source,
    )
    return None
