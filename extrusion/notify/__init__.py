"""Notifications: tell the abuse desk by e-mail and/or webhook when a sender is flagged.

`attach(engine, cfg)` is all a daemon does: it registers a `Notifier` as an
engine listener when `[notify]` enables a channel, and returns it (to close at
shutdown), or None when notifications are off.
"""

from __future__ import annotations

from collections.abc import Sequence

from extrusion.config import Config
from extrusion.notify.channels import Channel, EmailChannel, WebhookChannel
from extrusion.notify.notifier import Notifier, ReportBuilder
from extrusion.report.times import zone
from extrusion.scoring.api import EngineAPI

__all__ = ["Notifier", "attach", "channels_from_config"]


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


def attach(
    engine: EngineAPI,
    cfg: Config,
    build: ReportBuilder | None = None,
    channels: Sequence[Channel] | None = None,
) -> Notifier | None:
    """Start a Notifier listening to `engine`, or return None when no channel is enabled.

    `build` gives the evidence for a digest (normally `extrusion.report.load`
    against the store); without it the digest carries the state changes alone.
    """
    chosen = list(channels) if channels is not None else channels_from_config(cfg)
    if not chosen:
        return None
    notifier = Notifier(
        cfg.notify,
        chosen,
        build=build,
        hostname=cfg.general.hostname,
        tz=zone(cfg.report.timezone),
        max_destinations=cfg.report.max_destinations,
    ).start()
    engine.add_listener(notifier)
    return notifier
