"""Reading and validating the config file: `load(path)` and `from_dict(data)`."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from extrusion.config.build import build
from extrusion.config.errors import ConfigError
from extrusion.config.places import default_path, place_store
from extrusion.config.schema import Config
from extrusion.keys import override_problem


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a config file; raise ConfigError on any problem."""
    p = Path(path) if path is not None else default_path()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(p, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(p, "", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(p, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, "", f"not valid TOML: {exc}") from None
    return from_dict(data, p)


def from_dict(data: Mapping[str, Any], path: str | os.PathLike[str] = "<config>") -> Config:
    cfg: Config = build(Config, data, str(path), "")
    _check_references(cfg, str(path))
    return dataclasses.replace(cfg, path=str(path), store=place_store(cfg.store, str(path)))



def _check_references(cfg: Config, path: str) -> None:
    """Names that must point at something defined elsewhere in the file."""
    for needed in ("default", "list", "watch", "throttled"):
        if needed not in cfg.limits:
            raise ConfigError(path, f"limits.{needed}", "this limits class must be defined")
    for i, c in enumerate(cfg.customers):
        if c.limits not in cfg.limits:
            raise ConfigError(path, f"customers[{i}].limits", f"no [limits.{c.limits}] table")
    names = {c.name for c in cfg.customers}
    for i, o in enumerate(cfg.overrides):
        if o.action == "limits" and o.limits not in cfg.limits:
            raise ConfigError(path, f"overrides[{i}].limits", f"no [limits.{o.limits}] table")
        if (problem := override_problem(o.match, names)) is not None:
            raise ConfigError(path, f"overrides[{i}].match", problem)
    for i, name in enumerate(cfg.flows.allow_customers):
        if name not in names:
            raise ConfigError(path, f"flows.allow_customers[{i}]",
                              f"{name!r} is no customer in [[customers]]")
    s = cfg.scoring
    if not 0 < s.watch_score <= s.throttle_score <= s.hold_score:
        raise ConfigError(
            path, "scoring", "need 0 < watch_score <= throttle_score <= hold_score"
        )
    if s.block_score and s.block_score < s.hold_score:
        raise ConfigError(path, "scoring.block_score", "must be 0 (never) or >= hold_score")
    if not 0 < s.release_ratio <= 1:
        raise ConfigError(path, "scoring.release_ratio", "must be in (0, 1]")
