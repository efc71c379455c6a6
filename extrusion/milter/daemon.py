"""`extrusion milter`: open the engine, serve libmilter's socket, stop cleanly.

libmilter owns the socket, the threads and the signals: SIGTERM, SIGINT or
SIGHUP makes it stop accepting and return from `Milter.runmilter` (within
about five seconds, its listener's poll interval). Debian's libmilter serves
sessions from a worker pool that stops with it, so sessions in progress
cannot be drained: they are closed when the process exits and the MTA
applies its milter_default_action (accept, in the shipped Postfix config)
at once instead of waiting for its timeout. Then the event backlog is
replayed or saved and the engine closed, which flushes its queue (to the
spool if the store is down). systemd is told READY=1 once the socket accepts.
"""

from __future__ import annotations

import functools
import grp
import logging
import os
import pwd
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import Milter
import milter as libmilter  # pymilter's C module (not this package)

from extrusion import sockspec
from extrusion.config import Config
from extrusion.exits import EX_OK, EX_UNAVAILABLE
from extrusion.milter import constants as c
from extrusion.milter.adapter import ExtrusionMilter, Runtime, Settings
from extrusion.milter.backlog import FILE_NAME, Backlog
from extrusion.milter.dispatch import Dispatcher
from extrusion.milter.guard import EngineGuard
from extrusion.milter.heloconfirm import HeloResolver
from extrusion.scoring.api import EngineAPI
from extrusion.sdnotify import notify

log = logging.getLogger("extrusion.milter")

# How long start-up may take before the socket accepts connections.
READY_SECONDS = 30.0
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}

Opener = Callable[[Config], EngineAPI]


def default_opener(config: Config) -> EngineAPI:
    from extrusion.scoring.engine import open_engine

    engine: EngineAPI = open_engine(config)
    return engine


def run(config: Config, opener: Opener = default_opener) -> int:
    """Serve until SIGTERM/SIGINT; returns an exit status."""
    _setup_logging(config.general.log_level)
    # libmilter waits for the stop signals on a thread of its own; every other
    # thread, including the ones started below, must block them or the default
    # action (terminate) would hit the process from whichever thread got one,
    # skipping the flush below.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        engine = opener(config)
    except Exception as exc:
        log.error("cannot open the engine (store %s): %s: %s",
                  _redact(config.store.url), type(exc).__name__, exc)
        return EX_UNAVAILABLE
    backlog = Backlog(Path(config.store.spool_dir) / FILE_NAME)
    if loaded := backlog.load():
        log.warning("replaying %d events kept by the previous run", loaded)
    guard = EngineGuard(engine, timeout=config.milter.engine_timeout, backlog=backlog,
                        refresh_seconds=config.store.refresh_seconds)
    runtime = Runtime(guard, Settings.from_config(config), helo_resolver=HeloResolver())
    try:
        sessions = open_socket(runtime, config.milter.socket, config.milter.timeout,
                               config.milter.socket_mode, config.milter.socket_group)
    except libmilter.error as exc:
        log.error("cannot serve milter socket %s: %s", config.milter.socket, exc)
        guard.close()
        return EX_UNAVAILABLE
    log.info("milter running with an engine of its own; where the policy daemon or the log "
             "feed run on this host too, run `extrusion serve` instead (one engine per host)")
    guard.start()
    threading.Thread(target=_announce_when_ready, args=(config.milter.socket,),
                     name="extrusion-ready", daemon=True).start()
    status = EX_OK
    try:
        libmilter.main()
    except libmilter.error as exc:
        log.error("milter socket %s failed: %s", config.milter.socket, exc)
        status = EX_UNAVAILABLE
    notify("STOPPING=1")
    if sessions.active:
        log.warning("milter stopping: %d sessions in progress are left to the MTA's "
                    "milter_default_action", sessions.active)
    else:
        log.info("milter stopping")
    guard.close()
    if runtime.helo_resolver is not None:
        runtime.helo_resolver.close()
    log.info("milter stopped")
    return status


class SessionCount:
    """Live SMTP sessions, for the log at shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.active += n


def _counted(runtime: Runtime, sessions: SessionCount) -> ExtrusionMilter:
    return _CountedMilter(runtime, sessions)


class _CountedMilter(ExtrusionMilter):
    """Counts live sessions, for the log at shutdown."""

    def __init__(self, runtime: Runtime, sessions: SessionCount) -> None:
        super().__init__(runtime)
        self._sessions = sessions
        sessions.add(1)

    def close(self) -> int:
        try:
            return super().close()
        finally:
            self._sessions.add(-1)


def open_socket(runtime: Runtime, spec: str, timeout: int, mode: int = 0o660,
                group: str = "") -> SessionCount:
    """Register the callbacks and bind libmilter's socket; `libmilter.main()` then serves it.

    What `Milter.runmilter` does, split so that a socket that cannot be bound
    (an address in use) is an error at start-up, before anyone is told the
    milter is ready, and so that `extrusion serve` can run `main()` on a
    thread of its own. Raises `libmilter.error`.
    """
    sessions = SessionCount()
    factory = functools.partial(_counted, runtime, sessions)
    Milter.factory = factory
    calls = Dispatcher(factory)
    # pymilter reports what its C layer cannot decode through sys.excepthook.
    calls.install_hook()
    # The session's reply on a Python error pymilter could not hand to us (a
    # HELO or header name that is not UTF-8 fails in its C layer): carry on.
    libmilter.set_exception_policy(libmilter.CONTINUE)
    libmilter.set_flags(libmilter.ADDHDRS | libmilter.CHGHDRS | libmilter.QUARANTINE
                        | libmilter.SETSYMLIST)
    on = calls.session
    libmilter.set_connect_callback(calls.connect)
    libmilter.set_helo_callback(lambda ctx, host: on(ctx, "helo").hello(host))
    libmilter.set_envfrom_callback(lambda ctx, *b: on(ctx, "envfrom").envfrom_bytes(*b))
    libmilter.set_envrcpt_callback(lambda ctx, *b: on(ctx, "envrcpt").envrcpt_bytes(*b))
    libmilter.set_header_callback(lambda ctx, f, v: on(ctx, "header").header_bytes(f, v))
    libmilter.set_eoh_callback(lambda ctx: on(ctx, "eoh").eoh())
    libmilter.set_body_callback(lambda ctx, chunk: on(ctx, "body").body(chunk))
    libmilter.set_eom_callback(lambda ctx: on(ctx, "eom").eom())
    libmilter.set_abort_callback(lambda ctx: on(ctx, "abort").abort())
    libmilter.set_close_callback(calls.close)
    if (problem := socket_dir_problem(spec, group)) is not None:
        raise libmilter.error(problem)
    libmilter.setconn(spec)
    if timeout > 0:
        libmilter.settimeout(timeout)
    libmilter.register(c.MILTER_NAME,
                       data=lambda ctx: on(ctx, "data").data(),
                       unknown=lambda ctx, cmd: on(ctx, "unknown").unknown(cmd),
                       negotiate=calls.negotiate)
    try:
        libmilter.opensocket(True)  # True: remove a unix socket left by an earlier run
    except libmilter.error as exc:
        raise libmilter.error(f"{exc} (is another program listening there?)") from exc
    secure_socket(spec, mode, group)
    return sessions


def socket_dir_problem(spec: str, group: str) -> str | None:
    """Why a unix socket cannot be made where `spec` says, or None.

    The directory is not created here: it decides who may reach the socket in the
    instant before its mode is set, so its owner, group and mode are the
    administrator's (conf/systemd/extrusion.tmpfiles.conf). The line says how.
    """
    sock = sockspec.parse(spec)
    if sock.kind != "unix":
        return None
    directory = os.path.dirname(os.path.abspath(sock.path))
    user = _user_name()
    create = f"install -d -m 0750 -o {user} -g {group or user} {directory}"
    if not os.path.isdir(directory):
        return (f"the socket's directory {directory} does not exist; create it "
                f"(as root: {create})")
    if not os.access(directory, os.W_OK | os.X_OK):
        return (f"user {user} may not create the socket in {directory}; give it the "
                f"directory (as root: {create})")
    return None


def _user_name() -> str:
    """This process's user, by name where it has one."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def secure_socket(spec: str, mode: int, group: str) -> None:
    """Give a unix socket its mode and group, before anyone is told the milter is ready.

    Any process that can reach a libmilter socket can crash the milter (README,
    "libmilter's macro defect"), so only the MTA should. Raises `libmilter.error`.
    """
    sock = sockspec.parse(spec)
    if sock.kind != "unix":
        return
    try:
        gid = grp.getgrnam(group).gr_gid if group else -1
        os.chown(sock.path, -1, gid)
        os.chmod(sock.path, mode)
    except (KeyError, OSError) as exc:
        reason = f"no group {group!r}" if isinstance(exc, KeyError) else str(exc)
        raise libmilter.error(f"cannot set mode {mode:o} group {group or '-'} on "
                              f"{sock.path}: {reason}") from exc


def _announce_when_ready(spec: str) -> None:
    """Log and tell systemd once libmilter's socket accepts connections."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if sockspec.accepts(spec):
            log.info("milter listening on %s", spec)
            notify("READY=1")
            return
        time.sleep(0.05)
    log.error("milter socket %s did not open within %.0fs", spec, READY_SECONDS)


def _redact(url: str) -> str:
    """A store URL without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        rest = f"{user}:***@{rest.split('@', 1)[1]}"
    return scheme + sep + rest


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s extrusion milter[{os.getpid()}]: %(levelname)s %(message)s"))
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Schema migrations at start-up are the store's business; their chatter is not news.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
