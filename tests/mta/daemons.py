"""`extrusion serve` (milter, policy server and log feed around one engine) as a real
process wired to a test MTA.

`ExtrusionDaemons` writes a config for one test (SQLite store in the test dir,
the milter and policy addresses the throw-away Postfix was wired with, the
Postfix log as outcome feed, postsuper acting on the test instance), starts
the daemons the way systemd would (`Type=notify`: it waits for READY=1 on a
NOTIFY_SOCKET of its own), and stops them with SIGTERM, killing what does not
exit in time. `cli()` runs operator commands (`release`, `senders`, `report`)
as subprocesses against the same config.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import pytest

from tests.postfix_harness import SBIN_PATH, PostfixInstance

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
CLI_TIMEOUT = 60.0
DAEMONS = ("serve",)  # one process, one engine per host

TomlValue = str | int | float | bool | list[Any] | dict[str, Any]


def toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(data: Mapping[str, Any]) -> str:
    """Tables of scalars, `limits.CLASS` sub-tables and arrays of tables; enough for tests."""
    out: list[str] = []
    for section, body in data.items():
        if isinstance(body, list):
            for item in body:
                out.append(f"[[{section}]]")
                out += [f"{k} = {toml_value(v)}" for k, v in item.items()]
            continue
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        out.append(f"[{section}]")
        out += [f"{k} = {toml_value(v)}" for k, v in scalars.items()]
        for k, v in body.items():
            if isinstance(v, dict):
                out.append(f"[{section}.{k}]")
                out += [f"{kk} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(out) + "\n"


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class MTA(Protocol):
    """What the daemons' config needs to know of the test MTA (Postfix or Sendmail)."""

    @property
    def milter_port(self) -> int: ...
    @property
    def policy_port(self) -> int: ...
    @property
    def maillog(self) -> Path: ...
    @property
    def config_dir(self) -> Path: ...


class DaemonError(RuntimeError):
    """A daemon did not become ready; the message carries its last output."""


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]
    notify: socket.socket


@dataclass
class ExtrusionDaemons:
    """The daemons of one test, sharing one config and one store."""

    workdir: Path
    mta: MTA
    api_port: int
    settings: dict[str, Any] = field(default_factory=dict)
    procs: dict[str, _Proc] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.workdir / "extrusion.toml"

    @property
    def store_path(self) -> Path:
        return self.workdir / "extrusion.db"

    def base_settings(self) -> dict[str, Any]:
        pf = self.mta
        return {
            "general": {"hostname": "smarthost.extrusion.test", "log_level": "info"},
            "store": {"url": f"sqlite:///{self.store_path}", "refresh_seconds": 0.5,
                      "spool_dir": str(self.workdir / "spool")},
            "milter": self._milter(),
            "policyd": {"listen": f"tcp:{pf.policy_port}:interface=127.0.0.1",
                        "postsuper": "/usr/sbin/postsuper",
                        "postfix_config_dir": str(pf.config_dir)},
            "api": {"listen": f"tcp:{self.api_port}:interface=127.0.0.1"},
            "maillog": {"source": "file", "path": str(pf.maillog), "format": "postfix",
                        "poll_seconds": 0.2, "submission_wait_seconds": 5.0},
        }

    def _milter(self) -> dict[str, Any]:
        """The milter on the MTA's port; on Postfix the socketmap where it was wired."""
        milter: dict[str, Any] = {"socket": f"inet:{self.mta.milter_port}@127.0.0.1"}
        map_port = getattr(self.mta, "map_port", 0)
        if map_port:
            milter["attach_listen"] = f"tcp:{map_port}:interface=127.0.0.1"
        else:  # Sendmail: no smtpd_milter_maps, so no socketmap to serve
            milter["attach"] = "always"
        return milter

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(to_toml(deep_merge(self.base_settings(), self.settings)))
        return self.config_path

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}:{SBIN_PATH}"
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("EXTRUSION_CONFIG", None)
        return env

    # --- daemons ---

    def start(self, *which: str) -> ExtrusionDaemons:
        """Start the named daemons (default both) and wait until each says READY=1."""
        if not self.config_path.exists():
            self.write_config()
        for name in which or DAEMONS:
            self._start_one(name)
        return self

    def _start_one(self, name: str) -> None:
        if name in self.procs:
            raise DaemonError(f"{name} is already running")
        notify_name = f"@extrusion-test-{uuid.uuid4().hex}"
        env = self._env()
        env["NOTIFY_SOCKET"] = notify_name
        log = self.workdir / f"{name}.log"
        handle = log.open("ab")
        # Kept open for the daemon's life, as systemd does, so STOPPING=1 has a taker.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind("\0" + notify_name[1:])
        notify.settimeout(0.2)
        popen = subprocess.Popen(
            [sys.executable, "-m", "extrusion.cli", name, "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=env,
            cwd=self.workdir)
        self.procs[name] = _Proc(popen, log, handle, notify)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if b"READY=1" in notify.recv(4096):
                    return
            except TimeoutError:
                pass
            if popen.poll() is not None:
                break
        self._stop_one(name)
        raise DaemonError(f"extrusion {name} did not become ready:\n{self.output(name)[-3000:]}")

    def output(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, *which: str) -> dict[str, int]:
        """SIGTERM (drain), then SIGKILL after STOP_TIMEOUT; exit statuses by daemon."""
        statuses: dict[str, int] = {}
        for name in which or tuple(self.procs):
            statuses[name] = self._stop_one(name)
        return statuses

    def _stop_one(self, name: str) -> int:
        proc = self.procs.pop(name, None)
        if proc is None:
            return 0
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
        try:
            status = proc.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            status = proc.popen.wait()
        proc.handle.close()
        proc.notify.close()
        return status

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.popen.poll() is None

    def sender(self, key: str) -> dict[str, Any] | None:
        """The operator API's view of one sender (None if it knows none by that key)."""
        url = f"http://127.0.0.1:{self.api_port}/senders/{urllib.parse.quote(key, safe='')}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                return None
            raise

    # --- operator commands ---

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "extrusion.cli", *args, "--config", str(self.config_path)],
            capture_output=True, text=True, env=self._env(), cwd=self.workdir,
            timeout=CLI_TIMEOUT, check=False)
        if check and proc.returncode != 0:
            raise DaemonError(f"extrusion {' '.join(args)} exited {proc.returncode}: "
                              f"{proc.stderr.strip()}")
        return proc


@contextlib.contextmanager
def extrusion_daemons(workdir: Path, mta: MTA, settings: Mapping[str, Any] | None = None,
                      which: Sequence[str] = DAEMONS) -> Iterator[ExtrusionDaemons]:
    """Daemons running for the duration of the block; stopped (or killed) on the way out."""
    from tests.conftest import free_port

    d = ExtrusionDaemons(workdir, mta, free_port(), dict(settings or {}))
    d.write_config()
    try:
        yield d.start(*which)
    finally:
        d.stop()


@pytest.fixture(name="daemons")
def postfix_daemons(postfix: PostfixInstance, tmp_path: Path,
                    request: pytest.FixtureRequest) -> Iterator[ExtrusionDaemons]:
    """Both daemons on the shared Postfix; extra settings come by indirect
    parametrization. Held mail of the test is deleted after it, so it cannot leak into
    the next one."""
    settings = getattr(request, "param", {})
    with extrusion_daemons(tmp_path, postfix, settings) as d:
        yield d
    for qid in postfix.held():
        postfix.delete(qid)
