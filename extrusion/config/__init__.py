"""Configuration: one TOML file, validated once at start-up into frozen dataclasses.

Every key has a default here and a commented line in `conf/extrusion.toml`.
Validation is driven by the dataclass annotations, so adding a key is adding
a field; a field's `metadata["check"]` names an extra check (endpoint syntax,
CIDR, choices). Any problem raises `ConfigError` naming the file, the key and
the reason — the CLI turns it into one line and exit status 78 (EX_CONFIG).

The package by job: `service` and `judging` hold the sections, `schema` the
whole `Config`, `checks` the value checks, `build` the annotation-driven
validation, `places` where files are looked for, `load` the entry points.
"""

from __future__ import annotations

from extrusion.config.build import as_dict
from extrusion.config.checks import (
    check_endpoint,
    check_milter_socket,
    check_networks,
    check_store_url,
    check_syslog_endpoint,
    check_timezone,
)
from extrusion.config.errors import ConfigError
from extrusion.config.judging import Customer, Limits, Override, Probation, Scoring, Weights
from extrusion.config.load import from_dict, load
from extrusion.config.places import (
    CHECKOUT_PATH,
    DATA_DIR,
    ENV_VAR,
    SYSTEM_PATH,
    default_path,
    in_checkout,
    place_store,
)
from extrusion.config.schema import Config
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
from extrusion.exits import EX_CONFIG

__all__ = [
    "CHECKOUT_PATH",
    "DATA_DIR",
    "ENV_VAR",
    "EX_CONFIG",
    "SYSTEM_PATH",
    "Api",
    "Config",
    "ConfigError",
    "Customer",
    "Flows",
    "General",
    "Limits",
    "Maillog",
    "MilterSection",
    "Notify",
    "Override",
    "Policyd",
    "Probation",
    "ReportSection",
    "Scoring",
    "StoreSection",
    "Weights",
    "as_dict",
    "check_endpoint",
    "check_milter_socket",
    "check_networks",
    "check_store_url",
    "check_syslog_endpoint",
    "check_timezone",
    "default_path",
    "from_dict",
    "in_checkout",
    "load",
    "place_store",
]
