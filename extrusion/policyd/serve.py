"""`extrusion serve`: every enabled component in one service — policy daemon plus milter.

libmilter owns its process's signals (a thread of its own sigwaits on
SIGTERM/SIGINT/SIGHUP), which cannot share a process with a reactor that
handles the same signals. So the milter runs as a child process
(`extrusion milter` with the same config file) supervised from here: it is
started with the reactor, counted in readiness once its socket accepts,
sent SIGTERM when we stop (it drains by itself), and if it dies on its own
the whole service stops with an error so the supervisor restarts both.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from twisted.internet import defer, threads

from extrusion import sockspec
from extrusion.config import Config
from extrusion.policyd import daemon
from extrusion.policyd.postfixconf import main_cf_lines

log = logging.getLogger("extrusion.serve")

#: How long the milter's socket may take to accept after start (seconds).
MILTER_READY_SECONDS = 30.0
#: How long the milter may take to drain after SIGTERM before it is killed.
MILTER_STOP_SECONDS = 20.0
EX_SOFTWARE = 70  # a component died on its own


def milter_available() -> bool:
    try:
        import extrusion.milter.daemon  # noqa: F401 - only asking whether it is built
    except ImportError:
        return False
    return True


class MilterChild:
    """`extrusion milter` as a child process, driven from the reactor."""

    def __init__(self, config: Config, runner: daemon.Runner | None = None) -> None:
        self.config = config
        self.runner = runner
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.stopping = False

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "extrusion.cli", "milter", "--config", self.config.path]

    def start(self) -> None:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)  # readiness is ours to report, for both
        # Its own process group: a Ctrl-C on the terminal reaches only us, and we
        # pass one SIGTERM on (a second signal would cut the milter's drain short).
        self.proc = subprocess.Popen(self.argv(), env=env, process_group=0)
        log.info("milter started as process %d", self.proc.pid)
        threading.Thread(target=self._wait, name="extrusion-milter-wait", daemon=True).start()
        threads.deferToThread(self._probe).addCallback(self._probed)

    def _probe(self) -> bool:
        deadline = time.monotonic() + MILTER_READY_SECONDS
        while time.monotonic() < deadline and self.proc is not None and self.proc.poll() is None:
            if sockspec.accepts(self.config.milter.socket):
                return True
            time.sleep(0.05)
        return False

    def _probed(self, ok: bool) -> None:
        if self.ready.called:
            return
        if ok:
            self.ready.callback(None)
        else:
            self.ready.errback(RuntimeError(f"milter socket {self.config.milter.socket} "
                                            "did not accept connections"))

    def _wait(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        from twisted.internet import reactor

        reactor.callFromThread(self._exited, code)

    def _exited(self, code: int) -> None:
        if self.stopping:
            return  # join() reports it
        log.error("milter exited on its own with status %d; stopping everything", code)
        if self.runner is not None:
            self.runner.exit_code = EX_SOFTWARE
            self.runner.terminate()

    def stop(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def join(self) -> None:
        if self.proc is None:
            return
        try:
            code = self.proc.wait(MILTER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("milter did not stop within %.0fs; killing it", MILTER_STOP_SECONDS)
            self.proc.kill()
            code = self.proc.wait()
        log.info("milter exited with status %d", code)


def serve(config: Config) -> int:
    """Run the policy daemon and, when enabled and built, the milter beside it."""
    extra: list[Any] = []
    with_milter = config.milter.enabled and milter_available()
    banner = main_cf_lines(config, milter=with_milter)
    if config.milter.enabled and not with_milter:
        banner.append("# (milter enabled in config but not built yet: not started)")
    child = MilterChild(config) if with_milter else None
    if child is not None:
        extra.append(child)
    return daemon.run(config, extra=extra, banner=banner, on_runner=_bind(child))


def _bind(child: MilterChild | None) -> Any:
    def bind(runner: daemon.Runner) -> None:
        if child is not None:
            child.runner = runner

    return bind
