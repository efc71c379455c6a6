"""Notifications: tell the abuse desk by e-mail and/or webhook when a sender is flagged.

A daemon does one of two things, and closes what it got at shutdown:

- `attach(engine, cfg, build=...)` when it holds the engine: registers a
  started `Notifier` as an engine listener;
- `from_config(cfg, store=lambda: engine.store)` when listeners are handed to
  the engine later (policyd's `EngineService(listeners=[...])`): a started
  `Notifier` to put in that list, reading its evidence from the store that
  `store()` returns at digest time (the changes alone while it returns None).

Both return None when `[notify]` enables no channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from extrusion import identity
from extrusion.config import Config
from extrusion.notify.channels import Channel, EmailChannel, WebhookChannel
from extrusion.notify.claims import Claim, store_claim
from extrusion.notify.notifier import Notifier, ReportBuilder
from extrusion.report.model import Report
from extrusion.report.times import report_zone
from extrusion.scoring.api import EngineAPI
from extrusion.scoring.store import Store

__all__ = ["Notifier", "attach", "channels_from_config", "from_config"]


def channels_from_config(cfg: Config) -> list[Channel]:
    n = cfg.notify
    channels: list[Channel] = []
    if n.email_enabled:
        channels.append(
            EmailChannel(n.smtp_host, n.smtp_port, n.mail_from, n.mail_to, n.smtp_timeout)
        )
    if n.webhook_enabled:
        channels.append(WebhookChannel(n.webhook_url, n.webhook_token, n.webhook_timeout))
    return channels


def _started(
    cfg: Config, channels: Sequence[Channel] | None, build: ReportBuilder | None,
    claim: Claim | None = None,
) -> Notifier | None:
    chosen = list(channels) if channels is not None else channels_from_config(cfg)
    if not chosen:
        return None
    return Notifier(
        cfg.notify,
        chosen,
        build=build,
        hostname=cfg.general.hostname,
        tz=report_zone(cfg.report.timezone),
        max_destinations=cfg.report.max_destinations,
        claim=claim,
    ).start()


def _store_builder(cfg: Config, store: Callable[[], Store | None]) -> ReportBuilder:
    from extrusion.report.load import notification_builder

    def build(keys: Sequence[str]) -> Report:
        current = store()
        if current is None:
            raise LookupError("the store is not open yet")
        return notification_builder(
            current, half_life=cfg.scoring.half_life_seconds, own_domains=cfg.general.own_domains
        )(keys)

    return build


def from_config(
    cfg: Config,
    store: Callable[[], Store | None] | None = None,
    channels: Sequence[Channel] | None = None,
) -> Notifier | None:
    """A started Notifier for `cfg`, or None when no channel is enabled. With a `store`,
    hosts sharing it send one notification per event between them (claims.py)."""
    if store is None:
        return _started(cfg, channels, None)
    claim = store_claim(store, identity.mta_name(cfg), cfg.notify.claim_seconds)
    return _started(cfg, channels, _store_builder(cfg, store), claim)


def attach(
    engine: EngineAPI,
    cfg: Config,
    build: ReportBuilder | None = None,
    channels: Sequence[Channel] | None = None,
) -> Notifier | None:
    """Start a Notifier listening to `engine`, or return None when no channel is enabled.

    `build` gives the evidence for a digest (normally
    `extrusion.report.load.notification_builder(store)`); without it the
    digest carries the state changes alone.
    """
    notifier = _started(cfg, channels, build)
    if notifier is not None:
        engine.add_listener(notifier)
    return notifier
