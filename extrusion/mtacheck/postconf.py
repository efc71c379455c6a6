"""Reading Postfix's effective settings: `postconf -x`, `-n`, `-xP` for master.cf
overrides and `-M` for services, each bounded in time; and Postfix's time values."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from extrusion.postconf import SBIN_PATH

POSTCONF_TIMEOUT = 30.0
DEFAULT_CONFIG_DIR = "/etc/postfix"


class PostconfError(Exception):
    """postconf could not be run or refused the config directory."""



@dataclass(frozen=True)
class PostconfView:
    """What `postconf` says: effective values, explicit ones, overrides, services."""

    values: Mapping[str, str]
    explicit: frozenset[str] = frozenset()
    overrides: Mapping[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = ()
    config_dir: str = ""

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    @property
    def version(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.get("mail_version").split(".") if p.isdigit())


# --- reading postconf ----------------------------------------------------------------------


def parse_assignments(text: str) -> dict[str, str]:
    """`name = value` lines as printed by postconf (one logical line each)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip():
            out[name.strip()] = value.strip()
    return out


def read_postconf(config_dir: str | None = None) -> PostconfView:
    """Run postconf against a config directory (default: Postfix's own)."""
    exe = shutil.which("postconf", path=f"{SBIN_PATH}:{os.environ.get('PATH', '')}")
    if exe is None:
        raise PostconfError("postconf not found: is Postfix installed?")
    base = [exe] + (["-c", config_dir] if config_dir else [])
    # Postfix's own directory is where `postconf -d` says ($MAIL_CONFIG honoured); checked
    # here so a machine without Postfix configured gets our line, not postconf's fatal one.
    where = config_dir if config_dir is not None else _default_config_dir(exe)
    for name in ("main.cf", "master.cf"):
        if not os.path.isfile(os.path.join(where, name)):
            raise PostconfError(f"{where}: no {name} in this directory (is Postfix "
                                f"configured? --postfix-config names another directory)")

    def run(*args: str) -> str:
        try:
            proc = subprocess.run([*base, *args], capture_output=True, text=True,
                                  timeout=POSTCONF_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostconfError(f"postconf {' '.join(args)}: {exc}") from None
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()
            raise PostconfError(detail[-1] if detail else f"postconf exited {proc.returncode}")
        return proc.stdout

    # -x: values as Postfix uses them, $name and the $compatibility_level defaults
    # expanded (plain postconf prints `${{$compatibility_level} <level {1} ? ...}` for
    # smtpd_relay_restrictions, which reads as no relay guard at all).
    return PostconfView(
        values=parse_assignments(run("-x")),
        explicit=frozenset(parse_assignments(run("-n"))),
        overrides=parse_assignments(run("-xP")),
        services=tuple(line for line in run("-M").splitlines() if line.strip()),
        config_dir=config_dir or "",
    )



def _default_config_dir(exe: str) -> str:
    env = os.environ.get("MAIL_CONFIG")
    if env:
        return env
    try:
        proc = subprocess.run([exe, "-d", "-h", "config_directory"], capture_output=True,
                              text=True, timeout=POSTCONF_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostconfError(f"postconf -d config_directory: {exc}") from None
    return proc.stdout.strip() or DEFAULT_CONFIG_DIR


# --- values --------------------------------------------------------------------------------


def seconds(value: str) -> float | None:
    """A Postfix time value (`10s`, `2m`, `100`) in seconds; None if unreadable."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", value)
    if not m:
        return None
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return float(int(m.group(1)) * unit)


# --- the checks ----------------------------------------------------------------------------
