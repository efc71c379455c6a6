"""Running the daemon in the foreground: logging, signals, readiness, exit status.

SIGHUP re-reads the config. The first SIGTERM (or Ctrl-C) stops listening,
drains in-flight requests, flushes the engine and exits 0; a second one
exits at once. With NOTIFY_SOCKET set (systemd `Type=notify`) READY=1 is
sent once every listener listens.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import STDLibLogObserver, globalLogBeginner

from extrusion import sdnotify
from extrusion.config import Config, ConfigError
from extrusion.exits import EX_CONFIG, EX_FAILURE, EX_OK, EX_UNAVAILABLE
from extrusion.policyd.reactortypes import global_reactor
from extrusion.policyd.service import PolicydService, makeService

log = logging.getLogger("extrusion.policyd")

# Could not listen (address in use, permission): EX_UNAVAILABLE. A second signal
# leaves without draining: EX_FAILURE.

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    # Twisted's own messages go through the same handlers; its chatter stays below INFO.
    logging.getLogger("twisted").setLevel(logging.WARNING)
    # Alembic announces each of its plugins at INFO; the migration itself stays visible.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    observer: Any = STDLibLogObserver()
    globalLogBeginner.beginLoggingTo([observer], discardBuffer=True, redirectStandardIO=False)


class Runner:
    """Starts a service on the reactor and maps signals to reload / drain / exit."""

    def __init__(self, service: PolicydService, reactor: Any, extra: list[Any] | None = None):
        self.service = service
        self.reactor = reactor
        self.extra = extra or []  # other components sharing the process (the milter)
        self.exit_code = EX_OK
        self.stopping = False

    def install_signals(self) -> None:
        def on(signum: int, action: Callable[[], None]) -> None:
            def handler(_signum: int, _frame: FrameType | None) -> None:
                self.reactor.callFromThread(action)

            signal.signal(signum, handler)

        on(signal.SIGHUP, self.reload)
        on(signal.SIGTERM, self.terminate)
        on(signal.SIGINT, self.terminate)

    def start(self) -> None:
        self.reactor.addSystemEventTrigger("before", "shutdown", self._stop_all)
        self.service.startService()  # type: ignore[no-untyped-call]
        for component in self.extra:
            component.start()
        waits = [self.service.when_ready()] + [c.ready for c in self.extra]
        defer.gatherResults(waits, consumeErrors=True).addCallbacks(self._ready, self._not_ready)

    def _ready(self, _: Any) -> None:
        settle_heap()
        log.info("ready")
        sdnotify.notify("READY=1")

    def _not_ready(self, failure: Any) -> None:
        # gatherResults nests: the service's own listeners are gathered inside ours.
        while failure.check(defer.FirstError):
            failure = failure.value.subFailure
        log.error("cannot start: %s", failure.getErrorMessage())
        self.exit_code = EX_UNAVAILABLE
        self.terminate()

    def reload(self) -> None:
        log.info("SIGHUP: reloading the config")
        sdnotify.notify("RELOADING=1")
        self.service.reload_from_file().addBoth(lambda _: sdnotify.notify("READY=1"))

    def terminate(self) -> None:
        if self.stopping:
            log.warning("second stop signal: exiting at once")
            logging.shutdown()
            os._exit(EX_FAILURE)
        self.stopping = True
        log.info("stopping: draining connections (signal again to exit at once)")
        sdnotify.notify("STOPPING=1")
        self.reactor.stop()

    def _stop_all(self) -> Any:
        self.stopping = True
        for component in self.extra:
            component.stop()
        # The components (the milter) judge through the service's engine: wait for them
        # to finish and hand over what they hold before the service closes the engine.
        joins = [threads.deferToThread(component.join) for component in self.extra]
        done: defer.Deferred[Any] = defer.gatherResults(joins, consumeErrors=True)
        done.addErrback(lambda failure: log.error("stopping a component: %s",
                                                  failure.getErrorMessage()))
        done.addCallback(lambda _: self.service.stopService())
        return done


def settle_heap() -> None:
    """Once started: what start-up made (modules, config, the senders loaded from the
    store) lives as long as the daemon, so the cyclic collector stops walking it.

    Every full collection walked all of it again, as often as new senders' memories
    grew the heap by a quarter: on a 1 M-sender store, `decide()` at first sight ran
    13-28 % faster with it frozen (benchmarks/first_sight.py --freeze). A frozen
    object that later becomes part of a garbage cycle stays (reference counting still
    frees the rest): the start-up heap is not that. A higher threshold for the youngest
    generation was measured too and left at Python's default: the request path's
    objects die by reference counting, and the runs disagreed on its sign.
    """
    gc.collect()
    gc.freeze()


def run(
    config: Config,
    *,
    extra: list[Any] | None = None,
    banner: list[str] | None = None,
    on_runner: Callable[[Runner], None] | None = None,
    build: Callable[[Config], PolicydService] = makeService,
) -> int:
    """Run until stopped; returns the exit status.

    `extra` are components sharing the process's lifetime: objects with
    `start()`, `stop()`, `join()` and a `ready` Deferred. `build` makes the
    service (`extrusion.service.makeService` adds the adapters beside this one).
    """
    setup_logging(config.general.log_level)
    try:
        service = build(config)
    except ConfigError as exc:
        print(f"extrusion: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    for line in banner or []:
        print(line, flush=True)
    reactor = global_reactor()
    runner = Runner(service, reactor, extra)
    if on_runner is not None:
        on_runner(runner)
    runner.install_signals()
    reactor.callWhenRunning(runner.start)
    reactor.run(installSignalHandlers=False)
    for component in runner.extra:
        component.join()
    return runner.exit_code
