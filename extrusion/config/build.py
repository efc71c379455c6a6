"""From parsed TOML to the frozen dataclasses, driven by their annotations, and back
to plain data (`as_dict`, for `check-config` and reports)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from extrusion.config.checks import CHECKS
from extrusion.config.errors import ConfigError


def build(cls: type[Any], data: Any, path: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(path, prefix or "(top level)", "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            raise ConfigError(path, _join(prefix, key), "unknown key")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(path, _join(prefix, name), "missing required key")
            continue
        key = _join(prefix, name)
        value = _coerce(hints[name], data[name], path, key)
        if isinstance(value, Mapping) and f.default_factory is not dataclasses.MISSING:
            # Tables of named entries ([limits.NAME]) add to and replace the defaults.
            value = types.MappingProxyType({**f.default_factory(), **value})
        if (check := f.metadata.get("check")) and (reason := CHECKS[check](value)):
            raise ConfigError(path, key, reason)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ValueError as exc:  # __post_init__ cross-field checks
        raise ConfigError(path, prefix or "(top level)", str(exc)) from None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        return "a list"
    if origin in (dict, Mapping):
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _coerce(tp: Any, value: Any, path: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(path, key, f"must be one of {allowed}, not {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        last: ConfigError | None = None
        for arm in typing.get_args(tp):
            if arm is type(None):
                continue
            try:
                return _coerce(arm, value, path, key)
            except ConfigError as exc:
                last = exc
        assert last is not None
        raise last
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, key, f"must be a list, not {_toml_type(value)}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, path, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(path, key, f"must be a table, not {_toml_type(value)}")
        _k, item_tp = typing.get_args(tp)
        return types.MappingProxyType(
            {k: _coerce(item_tp, v, path, _join(key, k)) for k, v in value.items()}
        )
    if dataclasses.is_dataclass(tp):
        return build(typing.cast(type[Any], tp), value, path, key)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, key, f"must be a number, not {_toml_type(value)}")
        if value < 0:
            raise ConfigError(path, key, "must not be negative")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, key, f"must be an integer, not {_toml_type(value)}")
        if value < 0:
            raise ConfigError(path, key, "must not be negative")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(path, key, f"must be {_type_name(tp)}, not {_toml_type(value)}")
        return value
    raise TypeError(f"config field {key} has an unsupported type {tp!r}")


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def as_dict(cfg: Any) -> dict[str, Any]:
    """The effective config as plain data (for `check-config` and reports)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("internal"):
            continue
        out[f.name] = _plain(getattr(cfg, f.name))
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_dict(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
