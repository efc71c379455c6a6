"""The whole service's entry point: every enabled component in one process, around one
engine (`extrusion serve`, and `extrusion policyd` without the milter).

This module is the one place that knows every adapter: the policy daemon
(`extrusion.policyd`) builds the Twisted service, the flows follower
(`extrusion.flows`) and the milter (`extrusion.milter`) are attached here, so
no adapter imports another.

The policy server, the log feed, the operator API and the milter share the
engine the policy daemon's engine service opens, so one engine on the host
owns every sender's evidence, score and state: what only the milter sees
(headers, HELO) and what only the log shows (outcomes) are judged together,
and the live path reaches the verdicts `replay` reaches.

On Postfix the milter is attached only to clients under attention: Postfix's
smtpd_milter_maps asks the socketmap `MilterMap` serves on the reactor
(`extrusion.milter.attach`), from the same engine.

libmilter serves its socket on threads of its own (`MilterThread`), beside
the reactor on the main thread. Signals stay the reactor's: libmilter
blocks SIGTERM, SIGINT and SIGHUP on its threads and waits for them on one
of its own, but the kernel gives a signal sent to the process to the main
thread, which does not block them. Stopping asks libmilter to stop, waits
for its threads (at most its listener's poll interval, about five seconds),
replays what the milter could not hand over, and only then closes the
engine. Should libmilter ever catch a stop signal itself, its loop returns
and the whole service stops cleanly too.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from twisted.internet import defer

from extrusion.config import Config
from extrusion.exits import EX_SOFTWARE
from extrusion.policyd import daemon
from extrusion.policyd import service as policyd_service
from extrusion.policyd.engineservice import EngineService, Opener
from extrusion.policyd.postfixconf import main_cf_lines, queue_directory
from extrusion.policyd.service import PolicydService

log = logging.getLogger("extrusion.serve")

#: How long libmilter may take to stop after it is asked to (seconds).
MILTER_STOP_SECONDS = 20.0


def makeService(  # camelCase: the Twisted convention (twisted/mail/tap.py)
    config: Config, *, reactor: Any = None, opener: Opener | None = None
) -> PolicydService:
    """The policy daemon's service with the flows follower attached when [flows] is on."""
    return policyd_service.makeService(config, reactor=reactor, opener=opener, flows=_flows)


def _flows(config: Config, engines: EngineService, reactor: Any) -> Any:
    from extrusion.flows.service import FlowFeedService

    return FlowFeedService(config, engines, reactor)


class MilterThread:
    """The milter on the service's engine, served by libmilter beside the reactor."""

    def __init__(self, config: Config, runner: daemon.Runner | None = None) -> None:
        self.config = config
        self.runner = runner
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.stopping = False
        self._thread: threading.Thread | None = None
        self._guard: Any = None
        self._sessions: Any = None
        self._joined = False

    def start(self) -> None:
        import milter as libmilter

        from extrusion.milter.adapter import Runtime, Settings
        from extrusion.milter.backlog import FILE_NAME, Backlog
        from extrusion.milter.daemon import open_socket
        from extrusion.milter.guard import EngineGuard
        from extrusion.scoring.api import EngineSlot

        assert self.runner is not None, "bound to the runner before start"
        engines = _service(self.runner).engines
        backlog = Backlog(Path(self.config.store.spool_dir) / FILE_NAME)
        if loaded := backlog.load():
            log.warning("replaying %d milter events kept by the previous run", loaded)
        self._guard = EngineGuard(EngineSlot(lambda: engines.engine),
                                  timeout=self.config.milter.engine_timeout,
                                  backlog=backlog, owns_engine=False)
        from extrusion.milter.heloconfirm import HeloResolver

        runtime = Runtime(self._guard, Settings.from_config(self.config),
                          helo_resolver=HeloResolver())
        spec = self.config.milter.socket
        try:
            self._sessions = open_socket(runtime, spec, self.config.milter.timeout,
                                         self.config.milter.socket_mode,
                                         self.config.milter.socket_group)
        except libmilter.error as exc:
            self._joined = True  # nothing runs: nothing to wait for
            self._guard.close()
            self.ready.errback(RuntimeError(
                f"cannot serve milter socket {spec}: {exc}"))
            return
        self._guard.start()
        self._thread = threading.Thread(target=self._main, name="extrusion-milter", daemon=True)
        self._thread.start()
        log.info("milter listening on %s", spec)
        self.ready.callback(None)  # bound and listening: connections wait for main()

    def _main(self) -> None:
        import milter as libmilter
        from twisted.internet import reactor

        error = ""
        try:
            libmilter.main()
        except libmilter.error as exc:
            error = str(exc)
        reactor.callFromThread(self._exited, error)

    def _exited(self, error: str) -> None:
        if self.stopping:
            return
        if error:
            log.error("milter failed (%s); stopping everything", error)
            if self.runner is not None:
                self.runner.exit_code = EX_SOFTWARE
        else:
            log.warning("milter stopped on a signal it caught itself; stopping everything")
        if self.runner is not None:
            self.runner.terminate()

    def stop(self) -> None:
        import milter as libmilter

        self.stopping = True
        if self._thread is not None and self._thread.is_alive():
            libmilter.stop()

    def join(self) -> None:
        """Wait for libmilter, then hand the milter's backlog to the still-open engine."""
        if self._joined:
            return
        self._joined = True
        if self._thread is not None:
            self._thread.join(MILTER_STOP_SECONDS)
            if self._thread.is_alive():
                log.error("milter did not stop within %.0fs", MILTER_STOP_SECONDS)
        if self._sessions is not None and self._sessions.active:
            log.warning("milter stopped: %d sessions in progress were left to the MTA's "
                        "milter_default_action", self._sessions.active)
        if self._guard is not None:
            self._guard.close()
        log.info("milter stopped")


class MilterMap:
    """Postfix's smtpd_milter_maps served from the service's engine (`milter.attach`):
    the milter is attached only to clients under attention. On the reactor."""

    def __init__(self, config: Config, runner: daemon.Runner | None = None) -> None:
        self.config = config
        self.runner = runner
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.factory: Any = None
        self._listener: Any = None

    def start(self) -> None:
        from extrusion.milter.attach import Attendance, MilterMapFactory
        from extrusion.policyd.listen import ListenService

        assert self.runner is not None, "bound to the runner before start"
        service, m = _service(self.runner), self.config.milter
        engines = service.engines
        attendance = Attendance(lambda: engines.judging, others=m.attach_others,
                                refresh_seconds=m.attach_refresh_seconds,
                                clock=service.reactor.seconds)
        self.factory = MilterMapFactory(attendance,
                                        allowed_clients=self.config.policyd.allowed_clients,
                                        max_connections=m.attach_max_connections)
        self._listener = ListenService(service.reactor, m.attach_listen, self.factory,
                                       "milter map (smtpd_milter_maps)")
        self._listener.startService()
        self._listener.ready.addCallbacks(lambda _: self.ready.callback(None),
                                          self.ready.errback)

    def stop(self) -> None:
        if self._listener is not None and self._listener.running:
            self._listener.stopService()

    def join(self) -> None:
        """Nothing runs beside the reactor: nothing to wait for."""


def _service(runner: daemon.Runner) -> PolicydService:
    return runner.service


def serve(config: Config) -> int:
    """Run the policy daemon and, when enabled, the milter beside it."""
    extra: list[Any] = []
    with_milter = config.milter.enabled
    banner = main_cf_lines(config, milter=with_milter,
                           queue=queue_directory(config.policyd.postfix_config_dir)
                           if with_milter else "")
    child = MilterThread(config) if with_milter else None
    if child is not None:
        extra.append(child)
    if with_milter and config.milter_maps:
        extra.append(MilterMap(config))
    return daemon.run(config, extra=extra, banner=banner, on_runner=_bind(extra),
                      build=makeService)


def policyd(config: Config) -> int:
    """Run the policy daemon (policy server, log feed, operator API, flows) alone."""
    return daemon.run(config, build=makeService)


def _bind(children: list[Any]) -> Any:
    def bind(runner: daemon.Runner) -> None:
        for child in children:
            child.runner = runner

    return bind
