"""Which log feed `[maillog] source` asks for: a file followed, syslog datagrams
journaled and followed (extrusion.policyd.syslogfeed, built on the file's), or none."""

from __future__ import annotations

import logging
from typing import Any

from twisted.application.service import Service

from extrusion.config import Config
from extrusion.policyd.engineservice import EngineService
from extrusion.policyd.feed import FileFeedService
from extrusion.policyd.metrics import Metrics
from extrusion.policyd.syslogfeed import SyslogFeedService

log = logging.getLogger("extrusion.policyd.feed")


def make_feed_service(
    config: Config, engines: EngineService, reactor: Any, metrics: Metrics
) -> Service | None:
    """The feed service for `config`, or None when there is nothing to follow."""
    source = config.maillog.source
    if source == "none":
        log.warning("[maillog] source = \"none\": no delivery outcomes are read, so "
                    "delivery failures are never counted")
        return None
    if source == "file":
        return FileFeedService(config, engines, reactor, metrics)
    return SyslogFeedService(config, engines, reactor, metrics)
