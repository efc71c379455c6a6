"""The whole configuration: one frozen dataclass holding every section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from extrusion.config.judging import (
    Customer,
    Limits,
    Override,
    Probation,
    Scoring,
    Weights,
    default_limits,
)
from extrusion.config.service import (
    Api,
    Flows,
    General,
    Maillog,
    MilterSection,
    Notify,
    Policyd,
    ReportSection,
    StoreSection,
)


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration. `path` is where it was read from."""

    general: General = field(default_factory=General)
    store: StoreSection = field(default_factory=StoreSection)
    milter: MilterSection = field(default_factory=MilterSection)
    policyd: Policyd = field(default_factory=Policyd)
    api: Api = field(default_factory=Api)
    maillog: Maillog = field(default_factory=Maillog)
    report: ReportSection = field(default_factory=ReportSection)
    notify: Notify = field(default_factory=Notify)
    scoring: Scoring = field(default_factory=Scoring)
    weights: Weights = field(default_factory=Weights)
    probation: Probation = field(default_factory=Probation)
    flows: Flows = field(default_factory=Flows)
    limits: Mapping[str, Limits] = field(default_factory=default_limits)
    customers: tuple[Customer, ...] = ()
    overrides: tuple[Override, ...] = ()
    path: str = field(default="", metadata={"internal": True})

    @property
    def milter_maps(self) -> bool:
        """Whether Postfix's smtpd_milter_maps should ask `extrusion serve` which clients
        get the milter (`[milter] attach`). Not on an MX: there the milter reads every
        message's spam-filter verdict, evidence the log lacks."""
        return (self.milter.enabled and self.milter.attach_watched
                and self.general.mode == "smarthost")
