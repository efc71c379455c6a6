"""Staged floors of a Python policy daemon on Twisted: what extrusion's policy daemon
pays before any of its own work, one layer at a time.

    .venv/bin/python benchmarks/pyfloor.py STAGE --listen tcp:PORT:interface=127.0.0.1
                                           [--config extrusion.toml] [--stats FILE]

Every stage answers each policy request `action=DUNNO` at once, without reading it
(the least a Twisted server can do per request). The stages add the log feed's
layers of `extrusion policyd`, each one the previous plus one:

- "dunno": the server alone;
- "tail": extrusion's `FileFollower` reads `[maillog] path` every `[maillog]
  poll_seconds` in a worker thread (extrusion's `EnginePoller`, as the daemon does)
  and drops each line;
- "parse": each line also split and parsed by extrusion's `LogFeed` (its
  splitter and Postfix parser), the records dropped before the joiner;
- "join": the whole `LogFeed`, joiner included, with the daemon's join settings,
  its events handed to an engine that drops them.

With --send-now each reply leaves through the socket at once, by the daemon's
`extrusion.policyd.replysend.send_reply`, instead of Twisted's `write()`, which queues
it for the reactor's next turn (benchmarks/reply_write.py compares the two).

What `extrusion policyd` costs above "join" is its own request handling, engine,
store, checkpoints and services. benchmarks/mta.py runs these beside it behind a
real Postfix ("py-policy", "py-policy-tail", ...). With --stats, the requests
answered and the log lines read are written there as JSON at shutdown (SIGTERM).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any

from twisted.internet import endpoints, protocol
from twisted.internet import reactor as _reactor

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.sinks import CountingEngine  # noqa: E402
from extrusion.config import Config  # noqa: E402
from extrusion.config import load as load_config  # noqa: E402
from extrusion.maillog import logpath  # noqa: E402
from extrusion.maillog.feed import LogFeed  # noqa: E402
from extrusion.maillog.follow import FileFollower  # noqa: E402
from extrusion.maillog.records import Record  # noqa: E402
from extrusion.policyd.replysend import direct_socket, send_reply  # noqa: E402
from extrusion.poller import EnginePoller  # noqa: E402

STAGES = ("dunno", "tail", "parse", "join")
REPLY = b"action=DUNNO\n\n"
log = logging.getLogger("benchmarks.pyfloor")
reactor: Any = _reactor


class Dunno(protocol.Protocol):
    """DUNNO per request (a request ends with an empty line), its attributes unread."""

    rest = b""
    sock: Any = None

    def connectionMade(self) -> None:
        factory: Any = self.factory
        if factory.send_now:
            self.sock = direct_socket(self.transport)

    def dataReceived(self, data: bytes) -> None:
        data = self.rest + data
        n = data.count(b"\n\n")
        if n:
            data = data[data.rindex(b"\n\n") + 2 :]
            send_reply(self.transport, self.sock, REPLY * n)
            factory: Any = self.factory
            factory.requests += n
        self.rest = data


class DunnoFactory(protocol.Factory):
    protocol = Dunno

    def __init__(self, send_now: bool = False) -> None:
        self.requests = 0
        self.send_now = send_now


def _drop(t: float, host: str, record: Record) -> None:
    pass


def parse_only_feed(cfg: Config) -> LogFeed:
    """`LogFeed` up to its parser: the records are dropped instead of joined (a line of
    no interest still moves the joiner's clock on, as in the whole feed). No Postfix lane
    either: a lane reads its line straight into the joiner (`postfixlanes`)."""
    feed = LogFeed.from_config(CountingEngine(), cfg, live=True)
    feed.lanes = False
    # The feed binds its joiner's `add` once, for speed; replacing that binding is
    # what leaves the joiner out without copying the feed's line handling. (Not a
    # subclass: the feed may be compiled, and Python classes cannot extend it then.)
    feed._add = _drop
    return feed


def line_handler(stage: str, cfg: Config) -> Any:
    """What the follower hands each line to, for a stage that follows the log."""
    if stage == "tail":
        return lambda line: None
    # The daemon's feed settings (extrusion.maillog.recovery.CrashSafeFeed): a live log.
    if stage == "parse":
        return parse_only_feed(cfg).line
    return LogFeed.from_config(CountingEngine(), cfg, live=True).line


class DrainingFollower(FileFollower):
    """Reads what was written before the stop once more as it closes, so the lines
    counted at exit are every line written while it ran."""

    def close(self) -> None:
        self.poll()
        super().close()


class _Engines:
    """What `EnginePoller` asks for: an engine that is open (none is needed here)."""

    engine = CountingEngine()


class FollowerService(EnginePoller):
    """The daemon's log polling (a worker thread every `poll_seconds`), the follower
    without checkpoints, from the end of the file as at a first start."""

    def __init__(self, follower: FileFollower, poll_seconds: float) -> None:
        super().__init__(_Engines(), reactor, poll_seconds, log, "log follower")
        self.follower = follower

    def _poll(self, engine: Any) -> int:
        n: int = self.follower.poll()
        return n

    def _failed(self, failure: Any) -> None:
        log.warning("log follower: %s", failure.getErrorMessage())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=STAGES)
    ap.add_argument("--listen", required=True, help="Twisted endpoint, e.g. tcp:10040")
    ap.add_argument("--config", type=Path,
                    help="extrusion config whose [maillog] is followed (all but dunno)")
    ap.add_argument("--stats", type=Path, help="where to write requests and lines at exit")
    ap.add_argument("--send-now", action="store_true",
                    help="send each reply at once (send_reply), not through write()")
    args = ap.parse_args(argv)
    if args.stage != "dunno" and args.config is None:
        ap.error(f"stage {args.stage} follows a log: --config is required")
    logging.basicConfig(level=logging.WARNING)
    factory = DunnoFactory(args.send_now)
    endpoint = endpoints.serverFromString(reactor, args.listen)  # type: ignore[no-untyped-call]
    follower = None
    if args.stage == "dunno":
        endpoint.listen(factory)
    else:
        cfg = load_config(args.config)
        path, _why = logpath.resolve(cfg.maillog.path, cfg.policyd.postfix_config_dir)
        follower = DrainingFollower(path, line_handler(args.stage, cfg))
        poller = FollowerService(follower, cfg.maillog.poll_seconds)
        poller.startService()
        # Listening once the follower stands at the log's end: no line of traffic
        # sent after the port answers is missed.
        poller.ready.addCallback(lambda _: endpoint.listen(factory))
        reactor.addSystemEventTrigger("before", "shutdown", poller.stopService)

    def write_stats() -> None:
        lines = follower.lines if follower is not None else 0
        if args.stats is not None:
            args.stats.write_text(json.dumps({"requests": factory.requests, "lines": lines}))

    # After the poller stopped (its last poll done), so the lines are all counted.
    reactor.addSystemEventTrigger("after", "shutdown", write_stats)
    # The start-up heap frozen as extrusion's daemon freezes its own once ready, so
    # the collector's full passes cost the floors what they cost the daemon.
    gc.collect()
    gc.freeze()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
