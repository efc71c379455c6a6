"""What many test modules need (no tests here): a fake clock, configs, polling.

- `Clock`: the time an engine or notifier reads, moved by the test, so a test
  of "an hour later" neither sleeps nor races the machine's clock.
- `config()` / `config_data()` / `toml_text()`: a config with its store and
  spool in the test's directory, sections merged over the defaults.
- `wait_for()`: poll an observable until it holds, instead of sleeping for a
  guessed time; it fails with what was awaited.
- `in_ci()` / `missing()`: a part the test needs (a server, a driver, a Debian
  package) is missing: an error under CI=true, a skip with the reason elsewhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from extrusion import config as configmod
from extrusion.config import Config

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC, the usual start of a fake clock
T = TypeVar("T")


class Clock:
    """A fake clock: callable like `time.time`, set through `t` or `advance()`."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


def merge(data: Mapping[str, Any], sections: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with `sections` laid over it: a table key by key, anything else replaced."""
    out = dict(data)
    for name, values in sections.items():
        base = out.get(name)
        if isinstance(values, Mapping) and isinstance(base, Mapping):
            out[name] = {**base, **values}
        else:
            out[name] = values
    return out


def config_data(tmp: Path, store_url: str | None = None, *, hostname: str = "mx1",
                **sections: Any) -> dict[str, Any]:
    """The dict of a test config: store (SQLite in `tmp` unless `store_url`) and spool in `tmp`."""
    return merge({
        "general": {"hostname": hostname},
        "store": {"url": store_url or f"sqlite:///{tmp / 'extrusion.db'}",
                  "spool_dir": str(tmp / "spool")},
    }, sections)


def config(tmp: Path, store_url: str | None = None, *, hostname: str = "mx1",
           path: Path | None = None, **sections: Any) -> Config:
    """`config_data()` as a validated Config (named `path` when given)."""
    data = config_data(tmp, store_url, hostname=hostname, **sections)
    return configmod.from_dict(data, path) if path else configmod.from_dict(data)


def toml_text(data: dict[str, Any]) -> str:
    """A minimal TOML writer for the generated config files (tables of scalars and lists)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    for name, section in data.items():
        if isinstance(section, list):  # arrays of tables
            for item in section:
                lines.append(f"[[{name}]]")
                lines.extend(f"{k} = {value(v)}" for k, v in item.items())
        else:
            table(name, section)
    return "\n".join(lines) + "\n"


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` as the TOML file `path`; returns `path`."""
    path.write_text(toml_text(data))
    return path


def wait_for(what: str, probe: Callable[[], T], timeout: float = 15.0,
             interval: float = 0.05) -> T:
    """Poll `probe` until it returns something true and return that; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:g} s")
        time.sleep(interval)
    return found


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    """A part the test needs is missing: fail under CI (it must run there), else skip."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: required)", pytrace=False)
    pytest.skip(reason)
