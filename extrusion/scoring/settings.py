"""What the engine reads of the configuration, and nothing of the adapters' sections.

The engine judges by `[scoring]`, `[weights]`, `[probation]`, `[limits]`,
customers and overrides, keeps its evidence in `[store]` and answers for this
host (`mta`). One choice of the milter's section is the engine's to apply: a
bad HELO refused at MAIL FROM (`[milter] reject_bad_helo`), copied here so the
engine never reaches into `[milter]` itself; so is `[flows] mx_escalation`, the
weight of a direct sender whose mail our MX refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from extrusion import identity
from extrusion.config import (
    Config,
    Customer,
    General,
    Limits,
    Override,
    Probation,
    Scoring,
    StoreSection,
    Weights,
)


@dataclass(frozen=True)
class EngineSettings:
    general: General
    store: StoreSection
    scoring: Scoring
    weights: Weights
    probation: Probation
    limits: Mapping[str, Limits]
    customers: tuple[Customer, ...]
    overrides: tuple[Override, ...]
    reject_bad_helo: bool
    flows_mx_escalation: float  # `[flows] mx_escalation`: a direct sender refused at our MX
    mta: str  # the name this host's messages are stored under (`extrusion.identity`)

    @classmethod
    def from_config(cls, config: Config) -> EngineSettings:
        return cls(
            general=config.general, store=config.store, scoring=config.scoring,
            weights=config.weights, probation=config.probation, limits=config.limits,
            customers=config.customers, overrides=config.overrides,
            reject_bad_helo=config.milter.reject_bad_helo,
            flows_mx_escalation=config.flows.mx_escalation, mta=identity.mta_name(config),
        )
