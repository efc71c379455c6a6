"""MTA log parsing (Postfix, Sendmail, Exim) and log followers.

Public API:
- `LogFeed(engine)` / `LogFeed.from_config(engine, cfg)`: `.line(text)`,
  `.lines(texts)`, `.entry(t, host, program, pid, message)`, `.finish()`, `.stats`.
- `FileFollower(path, feed.line, checkpoints=store)`: `.poll()`, `.close()`.
- `SyslogProtocol(feed)` and `listen_syslog(reactor, endpoint, protocol)`.
- `MemoryCheckpoints`, the `Checkpoints` protocol the store implements.
"""

from extrusion.checkpoint import Checkpoints, MemoryCheckpoints
from extrusion.maillog.feed import LogFeed
from extrusion.maillog.feedsink import FeedStats
from extrusion.maillog.follow import FileFollower
from extrusion.maillog.join import JoinSettings

__all__ = [
    "Checkpoints",
    "FeedStats",
    "FileFollower",
    "JoinSettings",
    "LogFeed",
    "MemoryCheckpoints",
]
