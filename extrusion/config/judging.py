"""The sections of the config file the engine judges by: thresholds, weights, probation,
rate-limit classes, customers and the operators' standing overrides."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from extrusion.config.checks import checked


@dataclass(frozen=True)
class Scoring:
    """Thresholds of the engine; see conf/extrusion.toml for what each means."""

    window_seconds: float = 3600.0
    failure_trigger: int = 20
    half_life_seconds: float = 3600.0
    list_min_recipients: int = 10
    list_max_failure_share: float = 0.2
    watch_score: float = 10.0
    throttle_score: float = 20.0
    hold_score: float = 40.0
    block_score: float = 0.0
    release_ratio: float = 0.5
    misconfigured_failures: int = 5
    failure_share: float = 0.4
    share_min_failures: int = 8
    submission_window_seconds: float = 600.0
    envelope_domains: int = 4
    spread_domains: int = 30
    spread_factor: float = 5.0
    sasl_memory_seconds: float = 86400.0
    max_senders: int = 200_000

    def __post_init__(self) -> None:
        if self.max_senders < 0:
            raise ValueError("max_senders must be 0 (no cap) or more")
        if not 0.0 < self.failure_share <= 1.0:
            raise ValueError("failure_share must be more than 0 and at most 1")
        if self.share_min_failures < 1:
            raise ValueError("share_min_failures must be at least 1")


@dataclass(frozen=True)
class Weights:
    failed_recipient: float = 1.0
    extra_mailing_list: float = 10.0
    virus_rejection: float = 5.0
    spam_rejection: float = 1.5
    helo_anomaly: float = 10.0
    spam_verdict: float = 2.0
    own_network_inbound: float = 10.0
    own_network_refusal: float = 5.0
    postscreen_verdict: float = 5.0
    throttled_refusal: float = 0.25
    freemail_unauthenticated: float = 5.0
    unauthenticated_from_sasl_address: float = 5.0
    envelope_domains: float = 10.0
    recipient_spread: float = 5.0
    direct_to_mx: float = 25.0


@dataclass(frozen=True)
class Probation:
    """A sender that departs from its own history gets a small budget until its first
    outcomes come back (extrusion/scoring/probation.py)."""

    enabled: bool = True
    recipients: int = 30
    window_seconds: float = 600.0
    release_deliveries: int = 10
    min_failures: int = 3
    max_seconds: float = 7200.0
    baseline_messages: int = 20
    volume_factor: float = 5.0
    volume_min_recipients: int = 50

    def __post_init__(self) -> None:
        if self.recipients < 1 or self.release_deliveries < 1 or self.min_failures < 1:
            raise ValueError("recipients, release_deliveries and min_failures must be at least 1")
        if self.window_seconds <= 0 or self.max_seconds <= 0:
            raise ValueError("window_seconds and max_seconds must be more than 0")


@dataclass(frozen=True)
class Limits:
    """Automatic rate limits for one class of sender; 0 means no limit."""

    messages_per_hour: int = 0
    recipients_per_hour: int = 0
    messages_per_day: int = 0
    recipients_per_day: int = 0


def default_limits() -> Mapping[str, Limits]:
    return types.MappingProxyType({
        # A safety net while nothing speaks against a sender: a list of a few thousand
        # members posting several times an hour stays under it.
        "default": Limits(messages_per_hour=10000, recipients_per_hour=20000),
        "consumer": Limits(messages_per_hour=100, recipients_per_hour=300, messages_per_day=1000),
        "business": Limits(messages_per_hour=20000, recipients_per_hour=50000),
        # Chosen by the engine from the evidence, whatever the class (scoring/limits.py).
        "list": Limits(messages_per_hour=20000, recipients_per_hour=100000),
        "watch": Limits(messages_per_hour=500, recipients_per_hour=2000),
        "throttled": Limits(messages_per_hour=10, recipients_per_hour=20),
    })


@dataclass(frozen=True)
class Customer:
    """Maps IP ranges and SASL user patterns to `customer:NAME` and a limits class."""

    name: str
    limits: str = "default"
    networks: tuple[str, ...] = field(default=(), metadata=checked("networks"))
    sasl: tuple[str, ...] = ()


@dataclass(frozen=True)
class Override:
    """An operator's standing decision about a sender, by key, CIDR or SASL pattern."""

    match: str
    action: Literal["allow", "block", "hold", "monitor", "limits"]
    limits: str = ""
    reason: str = ""
