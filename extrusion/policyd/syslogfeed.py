"""[maillog] source = "syslog": datagrams journaled on the reactor, fed from the journal.

The reactor thread only parses each datagram's header and appends it to the
journal (extrusion/maillog/journal.py): a local file append, never the store.
The file feed's service then follows that journal in a worker thread exactly
as it follows a log file — checkpoints in the store, lines read again after a
crash de-duplicated (extrusion/maillog/recovery.py) — so a `kill -9` loses
nothing that was journaled and counts nothing twice, and policy answers
never wait on the database. Before each poll the journal is fsynced; after
it, a rotated journal the checkpoint has left behind is deleted.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer

from extrusion.config import Config
from extrusion.maillog import journal as journaling
from extrusion.policyd.engineservice import EngineService
from extrusion.policyd.feed import FileFeedService
from extrusion.policyd.metrics import Metrics

log = logging.getLogger("extrusion.policyd.feed")


class SyslogFeedService(FileFeedService):
    """Receives syslog datagrams into the journal; follows the journal like a log file."""

    def __init__(self, config: Config, engines: EngineService, reactor: Any, metrics: Metrics):
        directory = journaling.journal_dir(config.store.spool_dir)
        super().__init__(config, engines, reactor, metrics,
                         journal=(str(directory / journaling.NAME),
                                  config.maillog.syslog_listen))
        self.directory = directory
        self.journal: journaling.SyslogJournal | None = None
        self.port: Any = None
        self._dropped_seen = 0
        # Ready once listening: every datagram from then on is journaled, none missed.
        self.ready = defer.succeed(None)

    @property
    def waiting(self) -> int:
        """Bytes journaled and not yet read by the feed (0: caught up)."""
        if self.journal is None:
            return 0
        follower = self.follower
        position = None if follower is None else follower.follower.position
        return self.journal.unread_bytes(position)

    def startService(self) -> None:
        from extrusion.maillog.syslog import SyslogProtocol, listen_syslog
        from extrusion.maillog.timestamps import log_zone

        # The journal first: lines journaled by the previous run are read before new ones.
        try:
            self.journal = journaling.SyslogJournal(
                self.directory, self.config.maillog.syslog_journal_max_bytes)
        except OSError as exc:
            # One line and a failed start (exit 69), not a traceback and a deaf feed.
            why = (f"cannot keep the syslog journal in {self.directory} ([store] spool_dir): "
                   f"{exc.strerror}")
            log.error("%s; no syslog datagram is received", why)
            self.ready = defer.fail(RuntimeError(why))
            return
        proto = SyslogProtocol(self.journal, self.reactor.seconds,
                               log_zone(self.config.maillog.timezone))
        self.port = listen_syslog(self.reactor, self.config.maillog.syslog_listen, proto)
        log.info("receiving syslog on %s, journaled in %s", self.config.maillog.syslog_listen,
                 self.journal.path)
        super().startService()

    def _tick(self) -> defer.Deferred[Any] | None:
        self._count_dropped()
        return super()._tick()

    def _count_dropped(self) -> None:
        if self.journal is not None and self.journal.dropped > self._dropped_seen:
            self.metrics.log_lines.labels("dropped").inc(self.journal.dropped - self._dropped_seen)
            self._dropped_seen = self.journal.dropped

    def _crash_safe_feed(self, make: Any, engine: Any, store: Any) -> Any:
        # Every journal line is a datagram this daemon accepted: read from the start.
        return make(engine, self.config, store, path=self.path,
                    deliver=journaling.deliver, start_at="beginning")

    def _poll(self, engine: Any) -> int:
        """Worker thread: make the journal durable, feed it, then drop what is done with."""
        journal = self.journal
        assert journal is not None, "started"
        journal.sync()
        n = super()._poll(engine)
        follower = self.follower.follower
        if journal.release(follower.open_inodes(), follower.saved_inode):
            log.info("syslog journal: %s read and checkpointed; deleted", journal.rotated)
        return n

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        port, self.port = self.port, None
        if port is not None:
            yield defer.maybeDeferred(port.stopListening)
        # What was journaled and not read yet stays in the journal for the next start.
        yield super().stopService()
        if self.journal is not None:
            self._count_dropped()
            self.journal.close()
