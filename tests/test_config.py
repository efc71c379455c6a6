"""Config: the shipped file is complete and valid; every error class is one line and exit 78."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from extrusion import config as configmod
from extrusion.cli import main

from .conftest import REPO

SHIPPED = REPO / "conf" / "extrusion.toml"


def test_shipped_config_is_valid_and_matches_the_defaults() -> None:
    cfg = configmod.load(SHIPPED)
    defaults = configmod.from_dict({}, SHIPPED)
    # The shipped file documents the defaults: loading it changes nothing.
    assert configmod.as_dict(cfg) == configmod.as_dict(defaults)
    assert cfg.path == str(SHIPPED)


def _documented_keys(cls: type[Any], data: dict[str, Any], prefix: str) -> list[str]:
    """Keys of dataclass `cls` that are missing from the TOML table `data`."""
    missing = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            continue  # arrays of tables ([[customers]]) are documented as commented examples
        if f.name not in data:
            missing.append(key)
            continue
        if dataclasses.is_dataclass(tp):
            missing += _documented_keys(typing.cast(type, tp), data[f.name], key + ".")
        elif typing.get_origin(tp) in (dict, Mapping):
            item = typing.get_args(tp)[1]
            for name, table in data[f.name].items():
                missing += _documented_keys(item, table, f"{key}.{name}.")
    return missing


def test_every_key_is_present_in_the_shipped_file() -> None:
    data = tomllib.loads(SHIPPED.read_text())
    assert _documented_keys(configmod.Config, data, "") == []


def test_every_key_in_the_shipped_file_has_a_comment_nearby() -> None:
    # Each section header is followed by commented keys; a key line with no
    # comment within the 8 lines above it is undocumented.
    lines = SHIPPED.read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#") and not line.startswith("["):
            window = lines[max(0, i - 8) : i]
            if not any(w.lstrip().startswith("#") for w in window):
                undocumented.append(line)
    assert undocumented == []


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[general]\nmood = 'calm'\n", "general.mood", "unknown key"),
        ("[wat]\n", "wat", "unknown key"),
        ("[general]\nmonitor_only = 'yes'\n", "general.monitor_only", "must be true or false"),
        ("[scoring]\nfailure_trigger = 'many'\n", "scoring.failure_trigger", "must be an integer"),
        ("[scoring]\nfailure_trigger = -3\n", "scoring.failure_trigger", "must not be negative"),
        ("[scoring]\nwindow_seconds = true\n", "scoring.window_seconds", "must be a number"),
        ("[general]\nmode = 'relay'\n", "general.mode", "must be one of"),
        ("[policyd]\nlisten = '10040'\n", "policyd.listen", "not a Twisted endpoint"),
        ("[api]\nlisten = 'tcp:99999'\n", "api.listen", "bad port"),
        ("[milter]\nsocket = 'localhost:8890'\n", "milter.socket", "not a milter socket"),
        ("[milter]\nsocket = 'inet6:8890@127.0.0.1'\n", "milter.socket",
         "127.0.0.1 is not an IPv6 address"),
        ("[milter]\nsocket = 'inet:8890@::1'\n", "milter.socket", "::1 is not an IPv4 address"),
        ("[milter]\nsocket = 'unix:milter.sock'\n", "milter.socket", "absolute path"),
        ("[maillog]\nsyslog_listen = 'tcp:514'\n", "maillog.syslog_listen", "not a syslog"),
        ("[policyd]\nallowed_clients = ['10.0.0.0/33']\n", "policyd.allowed_clients", "not an IP"),
        ("[policyd]\nallowed_clients = '127.0.0.1'\n", "policyd.allowed_clients", "must be a list"),
        ("[store]\nurl = 'mysql://x'\n", "store.url", "must start with sqlite"),
        ("[[customers]]\nlimits = 'business'\n", "customers[0].name", "missing required key"),
        ("[[customers]]\nname = 'a'\nlimits = 'gold'\n", "customers[0].limits", "no [limits.gold]"),
        (
            "[[overrides]]\nmatch = 'ip:192.0.2.1'\naction = 'bless'\n",
            "overrides[0].action",
            "must be one of",
        ),
        ("[scoring]\nwatch_score = 50.0\n", "scoring", "watch_score <= throttle_score"),
        (
            "[limits.gold]\nmessages_per_hour = 'lots'\n",
            "limits.gold.messages_per_hour",
            "must be an integer",
        ),
        ("general = 3\n", "general", "must be a table"),
    ],
)
def test_each_error_names_file_key_and_reason(
    write_config: Any, capsys: pytest.CaptureFixture[str], text: str, key: str, reason: str
) -> None:
    path = write_config(text)
    with pytest.raises(configmod.ConfigError) as err:
        configmod.load(path)
    assert err.value.key == key
    assert reason in err.value.reason
    # Through the CLI: one line on stderr, exit status 78, no traceback.
    assert main(["check-config", "--config", str(path)]) == configmod.EX_CONFIG
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1
    assert str(path) in out.err and key in out.err and reason in out.err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["check-config", "--config", str(missing)]) == 78
    err = capsys.readouterr().err
    assert err == f"extrusion: config error: {missing}: file not found\n"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"[general\nmode = 1", "not valid TOML"), (b"\xff\xfe[general]", "not UTF-8")],
)
def test_broken_file(
    write_config: Any, capsys: pytest.CaptureFixture[str], raw: bytes, reason: str
) -> None:
    path = write_config("")
    path.write_bytes(raw)
    assert main(["check-config", "--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1


def test_unreadable_file(write_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config("")
    path.unlink()
    path.mkdir()  # a directory where the file should be: read fails
    assert main(["check-config", "--config", str(path)]) == 78
    assert "cannot read" in capsys.readouterr().err


def test_named_tables_add_to_the_defaults(write_config: Any) -> None:
    cfg = configmod.load(write_config("[limits.gold]\nmessages_per_hour = 7\n"))
    assert cfg.limits["gold"].messages_per_hour == 7
    assert cfg.limits["gold"].recipients_per_hour == 0
    assert "throttled" in cfg.limits and "default" in cfg.limits


def test_config_objects_are_immutable() -> None:
    cfg = configmod.from_dict({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.general.mode = "mx"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.limits["x"] = cfg.limits["default"]  # type: ignore[index]


def test_customers_and_overrides_are_typed(write_config: Any) -> None:
    cfg = configmod.load(
        write_config(
            "[[customers]]\nname = 'acme'\nlimits = 'business'\nnetworks = ['192.0.2.0/24']\n"
            "[[overrides]]\nmatch = 'customer:acme'\naction = 'allow'\nreason = 'contract'\n"
        )
    )
    assert cfg.customers[0] == configmod.Customer(
        name="acme", limits="business", networks=("192.0.2.0/24",)
    )
    assert cfg.overrides[0].action == "allow"


def test_check_config_prints_the_effective_config(
    write_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Listeners that bind nothing: check-config tries each port, and the default ones may
    # be taken by a daemon another test runs.
    path = write_config("[scoring]\nfailure_trigger = 30\n[milter]\nenabled = false\n"
                        "[policyd]\nlisten = \"tcp:0:interface=127.0.0.1\"\n"
                        "[api]\nlisten = \"tcp:0:interface=127.0.0.1\"\n")
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"# {path}: OK" in out
    assert "scoring.failure_trigger = 30" in out
    assert 'milter.socket = "unix:/var/spool/postfix/extrusion/milter.sock"' in out
    assert 'milter.socket_group = "postfix"' in out


def test_default_path_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(configmod.ENV_VAR, str(tmp_path / "x.toml"))
    assert configmod.default_path() == tmp_path / "x.toml"
    monkeypatch.delenv(configmod.ENV_VAR)
    assert configmod.default_path() == configmod.CHECKOUT_PATH


def test_installed_command_exits_78_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[milter]\ntimeout = 'soon'\n")
    env = {**os.environ, "EXTRUSION_CONFIG": str(bad)}
    proc = subprocess.run(
        [sys.executable, "-m", "extrusion.cli", "check-config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 78
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"extrusion: config error: {bad}: milter.timeout: must be an integer, not the string 'soon'"
    )
