"""`makeService(config)`: the policy daemon as one Twisted MultiService.

Children: the engine owner, the policy delegation server, the operator API,
the live log feed and, when the caller hands one in, the flow-record
follower ([flows]); each only when enabled. The policy daemon knows no other
adapter: `extrusion.service` passes the flows follower in. Stopping is
ordered (stop listening, drain policy connections, stop the feeds, finish
queue actions, close the engine) so that a SIGTERM loses no answer and no
event. `reload()` applies a new config without dropping a connection.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer, threads

from extrusion import config as configmod
from extrusion import notify
from extrusion.config import Config, ConfigError
from extrusion.policyd import constants as c
from extrusion.policyd.api import OperatorApi, make_site
from extrusion.policyd.directory import sender_counts, store_directory
from extrusion.policyd.engineservice import EngineService, Opener
from extrusion.policyd.feeds import make_feed_service
from extrusion.policyd.holdqueue import QueueActions
from extrusion.policyd.listen import ListenService
from extrusion.policyd.metrics import Metrics
from extrusion.policyd.protocol import PolicyFactory
from extrusion.policyd.reactortypes import global_reactor
from extrusion.policyd.responder import Responder
from extrusion.scoring.engine import store_of

# The milter's socket and its attach map are opened once, by `extrusion serve`.
MILTER_RESTART_KEYS = tuple(("milter", k) for k in (
    "socket", "attach", "attach_listen", "attach_others", "attach_refresh_seconds",
    "attach_max_connections"))

log = logging.getLogger("extrusion.policyd")

# Builds a child that reads the shared engine ([flows]'s follower): given the config, the
# engine service and the reactor. A `ready` Deferred and `stopService` are all it needs.
FlowsFactory = Callable[[Config, EngineService, Any], Any]


def validate(config: Config) -> None:
    """Checks that need more than one key or knowledge of this daemon; raises ConfigError."""
    verb = config.policyd.default_action.split(" ", 1)[0]
    if verb.upper() not in c.DEFAULT_ACTION_VERBS or verb != verb.upper():
        allowed = ", ".join(sorted(c.DEFAULT_ACTION_VERBS))
        raise ConfigError(
            config.path, "policyd.default_action",
            f"{verb!r} is not an access(5) action extrusion can answer with ({allowed})",
        )
    if "\n" in config.policyd.default_action:
        raise ConfigError(config.path, "policyd.default_action", "must be one line")
    if config.api.enabled and not config.api.token and not _loopback_only(config.api.listen):
        raise ConfigError(
            config.path, "api.token",
            "the API listens beyond loopback, so a token is required",
        )
    if config.policyd.max_line_bytes < 64 or config.policyd.max_attributes < 1:
        raise ConfigError(
            config.path, "policyd.max_line_bytes",
            "limits this small would refuse every Postfix request",
        )


def _loopback_only(endpoint: str) -> bool:
    if endpoint.startswith("unix:"):
        return True
    # IPv6 interfaces escape their colons in endpoint strings: interface=\:\:1
    m = re.search(r"interface=((?:\\:|[^:])+)", endpoint)
    if m is None:
        return False  # no interface= listens on every address
    host = m.group(1).replace("\\", "").strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_opener(config: Config) -> Any:
    from extrusion.scoring.engine import open_engine

    return open_engine(config)


class PolicydService(MultiService):
    """The whole daemon. `when_ready()` fires once it listens everywhere it should."""

    def __init__(
        self, config: Config, reactor: Any, opener: Opener, flows: FlowsFactory | None = None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.config = config
        self.reactor = reactor
        self.metrics = Metrics()
        self.engines = EngineService(
            config, opener, reactor, self.metrics, sender_counts=sender_counts
        )
        self._attach(self.engines)
        self._hear_outcomes(config, reactor)
        self.responder = Responder(
            self.engines.decisions, config.policyd.default_action, self.metrics, reactor.seconds
        )
        if self.queue is not None:
            self.responder.on_hold = self.queue.held_by_policy
        self._listen_policy(config, reactor)
        self._listen_api(config, reactor)
        self._ready: defer.Deferred[None] | None = None
        self.feed = make_feed_service(config, self.engines, reactor, self.metrics)
        if self.feed is not None:
            self._attach(self.feed)
        self.flows: Any = None
        if config.flows.enabled and flows is not None:
            self.flows = flows(config, self.engines, reactor)
            self._attach(self.flows)

    def _hear_outcomes(self, config: Config, reactor: Any) -> None:
        """The listeners on the engine's state changes: queue holds and the abuse desk."""
        self.queue: QueueActions | None = None
        if config.policyd.hold_queued_mail:
            self.queue = QueueActions(
                self.engines,
                postsuper=config.policyd.postsuper,
                config_dir=config.policyd.postfix_config_dir,
                mta=config.general.hostname,
                reactor=reactor,
                metrics=self.metrics,
                audit=None,
            )
            self.engines.listeners.append(self.queue.on_state_change)
        # The abuse desk hears of flagged senders from the process that sees the
        # outcomes; the notifier reads its evidence from the engine's store.
        self.notifier = notify.from_config(
            config, store=lambda: store_of(self.engines.engine)
        )
        if self.notifier is not None:
            self.engines.listeners.append(self.notifier)

    def _listen_policy(self, config: Config, reactor: Any) -> None:
        """The policy protocol's listener, if `[policyd] enabled`."""
        self.policy: ListenService | None = None
        self.policy_factory: PolicyFactory | None = None
        if config.policyd.enabled:
            p = config.policyd
            self.policy_factory = PolicyFactory(
                self.responder, self.metrics, reactor,
                allowed_clients=p.allowed_clients, max_line=p.max_line_bytes,
                max_attributes=p.max_attributes, idle_timeout=p.idle_timeout,
                request_timeout=p.request_timeout, max_connection_seconds=p.max_connection_seconds,
                max_connections_per_client=p.max_connections_per_client,
            )
            self.policy = ListenService(reactor, p.listen, self.policy_factory, "policy server")
            self._attach(self.policy)

    def _listen_api(self, config: Config, reactor: Any) -> None:
        """The operator API's listener, if `[api] enabled`."""
        self.api: OperatorApi | None = None
        self.api_listener: ListenService | None = None
        if config.api.enabled:
            self.api = OperatorApi(
                source=self.engines,
                directory=lambda: store_directory(self.engines.engine),
                health=self,
                metrics=self.metrics,
                token=config.api.token,
                clock=reactor.seconds,
                reactor=reactor,
            )
            self.api_listener = ListenService(
                reactor, config.api.listen, make_site(self.api), "operator API"
            )
            self._attach(self.api_listener)

    def _attach(self, child: Any) -> None:
        child.setServiceParent(self)

    # --- readiness and health -----------------------------------------------------------

    def when_ready(self) -> defer.Deferred[None]:
        """Fires once every listener listens, the first attempt to open the engine is done
        and the log follower is positioned. Call it once (it consumes the parts' results)."""
        if self._ready is None:
            engine_then_feed = self.engines.ready.addCallback(self._feed_ready)
            waits = [engine_then_feed]
            waits += [s.ready for s in (self.policy, self.api_listener) if s is not None]
            d = defer.gatherResults(waits, consumeErrors=True)
            self._ready = d.addCallback(lambda _: None)
        return self._ready

    def _feed_ready(self, _: Any) -> Any:
        # The log follower positions itself once the engine is open; without an
        # engine there is nothing to wait for (it follows as soon as there is one).
        if self.engines.engine is None:
            return None
        waits = [r for r in (getattr(self.feed, "ready", None),
                             getattr(self.flows, "ready", None)) if r is not None]
        return defer.gatherResults(waits, consumeErrors=True) if waits else None

    def health(self) -> dict[str, Any]:
        engine_ok = self.engines.engine is not None
        status = "ok" if self.engines.healthy else "degraded"
        out: dict[str, Any] = {
            "status": status,
            "engine": "open" if engine_ok else "unavailable",
            "judging": self.engines.judging is not None,
            "store": "ok" if self.engines.healthy else "failing",
            "policy_connections": len(self.policy_factory.connections)
            if self.policy_factory is not None else 0,
        }
        if status != "ok" and self.engines.last_error:
            out["error"] = self.engines.last_error[:200]
        # The feed's health is a detail, never the status: a quiet log is no fault here.
        watch = getattr(self.feed, "watch", None)
        out["maillog"] = (watch.health() if watch is not None else
                          {"source": self.config.maillog.source,
                           "detail": "no delivery outcomes are read"})
        return out

    # --- reload -------------------------------------------------------------------------

    def reload_from_file(self) -> defer.Deferred[bool]:
        """SIGHUP: re-read the file the config came from; a bad file changes nothing."""
        path = self.config.path or None
        try:
            new = configmod.load(path)
            validate(new)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return defer.succeed(False)
        return self.reload(new)

    def reload(self, new: Config) -> defer.Deferred[bool]:
        old = self.config
        for section, key in (("policyd", "listen"), ("api", "listen"), ("store", "url"),
                             ("maillog", "source"), ("maillog", "path"),
                             ("maillog", "syslog_listen"), ("policyd", "enabled"),
                             ("api", "enabled"), ("policyd", "hold_queued_mail"),
                             ("flows", "enabled"), *MILTER_RESTART_KEYS):
            if getattr(getattr(old, section), key) != getattr(getattr(new, section), key):
                log.warning("reload: %s.%s changed; restart to apply it", section, key)
        self.config = new
        self.responder.default_action = new.policyd.default_action
        if self.policy_factory is not None:
            p = new.policyd
            self.policy_factory.configure(
                allowed_clients=p.allowed_clients, max_line=p.max_line_bytes,
                max_attributes=p.max_attributes, idle_timeout=p.idle_timeout,
                request_timeout=p.request_timeout, max_connection_seconds=p.max_connection_seconds,
                max_connections_per_client=p.max_connections_per_client,
            )
        if self.api is not None:
            self.api.token = new.api.token.encode()
        if self.queue is not None:
            self.queue.postsuper = new.policyd.postsuper
            self.queue.config_dir = new.policyd.postfix_config_dir
        if self.flows is not None:
            self.flows.reload(new)  # applied by the flow follower's thread (extrusion.flows)
        d = self.engines.reload(new)

        def done(engine_reloaded: bool) -> bool:
            log.info("config reloaded from %s%s", new.path or "<memory>",
                     "" if engine_reloaded else " (engine not open: it gets it when it opens)")
            return True

        def failed(failure: Any) -> bool:
            log.error("reload: the engine refused the new config: %s",
                      failure.getErrorMessage())
            return False

        return d.addCallbacks(done, failed)

    # --- ordered stop -------------------------------------------------------------------

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Stop listening, drain, stop the feed, finish queue actions, close the engine."""
        self.running = 0
        listeners = [s for s in (self.policy, self.api_listener) if s is not None]
        yield defer.DeferredList([defer.maybeDeferred(s.stopService) for s in listeners])
        if self.policy_factory is not None:
            drained = self.policy_factory.drain()
            timeout = self.reactor.callLater(self.config.policyd.drain_seconds, drained.cancel)
            try:
                yield drained
            except defer.CancelledError:
                left = len(self.policy_factory.connections)
                log.warning("drain: %d policy connections still open; closing them", left)
                for proto in list(self.policy_factory.connections):
                    proto.close()
            else:
                if timeout.active():
                    timeout.cancel()
        if self.feed is not None:
            yield defer.maybeDeferred(self.feed.stopService)
        if self.flows is not None:
            yield defer.maybeDeferred(self.flows.stopService)
        if self.queue is not None and self.queue.pending:
            yield defer.DeferredList(list(self.queue.pending))
        yield self.engines.stopService()
        if self.notifier is not None:
            # close() sends what is pending and joins the worker: not on the reactor.
            yield threads.deferToThread(self.notifier.close)
        log.info("stopped")


def makeService(  # camelCase: the Twisted convention (twisted/mail/tap.py)
    config: Config, *, reactor: Any = None, opener: Opener | None = None,
    flows: FlowsFactory | None = None,
) -> PolicydService:
    """Build the policy daemon for `config` (validated here); start it with startService()."""
    validate(config)
    return PolicydService(config, reactor or global_reactor(), opener or default_opener, flows)
