"""The installed `extrusion` command as a subprocess: one line per failure, documented
exit statuses, `--version`, `--config` on either side of the command, the store named."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

from extrusion.exits import EX_CANTCREAT, EX_CONFIG, EX_OK, EX_UNAVAILABLE

EXE = str(Path(sys.executable).parent / "extrusion")


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "EXTRUSION_CONFIG"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={**base, **(env or {})}, check=False)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["senders"], ["hold", "ip:192.0.2.1", "-r", "x"]])
@pytest.mark.parametrize("where", ["under-a-file", "missing-root"])
def test_store_directory_that_cannot_be_made_is_one_line_and_73(
    write_config: Callable[[str], Path], tmp_path: Path, command: list[str], where: str
) -> None:
    (tmp_path / "plain").write_text("not a directory")
    db = (tmp_path / "plain" / "var" / "extrusion.db" if where == "under-a-file"
          else Path("/proc/extrusion-none/extrusion.db"))  # /proc takes no new directories
    path = write_config(f'[store]\nurl = "sqlite:///{db}"\n')
    proc = run(*command, "--config", str(path))
    assert proc.returncode == EX_CANTCREAT
    line = one_line(proc)
    assert line.startswith(f"extrusion {command[0]}: cannot create the store directory ")
    assert str(db.parent) in line


@pytest.mark.parametrize("command", [["senders"], ["hold", "ip:192.0.2.1", "-r", "x"],
                                     ["show", "ip:192.0.2.1"], ["report"]])
def test_unreachable_postgresql_is_one_line_and_69(
    write_config: Callable[[str], Path], command: list[str]
) -> None:
    with socket.socket() as sock:  # bound but not listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        path = write_config(
            f'[store]\nurl = "postgresql+psycopg://postgres:secret@127.0.0.1:{port}/x"\n')
        proc = run(*command, "--config", str(path))
    assert proc.returncode == EX_UNAVAILABLE
    line = one_line(proc)
    assert line.startswith(f"extrusion {command[0]}: ") and "store unavailable" in line
    assert "secret" not in line


def test_version_comes_from_the_package_metadata() -> None:
    proc = run("--version")
    assert proc.returncode == EX_OK
    assert proc.stdout == f"extrusion {version('extrusion')}\n"


def test_config_before_or_after_the_command_and_from_the_environment(
    write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    path = write_config(f'[store]\nurl = "sqlite:///{tmp_path / "db" / "x.db"}"\n')
    runs = [run("--config", str(path), "senders"), run("senders", "--config", str(path)),
            run("senders", env={"EXTRUSION_CONFIG": str(path)})]
    for proc in runs:
        assert proc.returncode == EX_OK, proc.stderr
        assert proc.stdout.startswith("SENDER")
        assert one_line(proc).startswith(f"extrusion: store sqlite:///{tmp_path}/db/x.db")
    # After the command wins over before it: the broken one before is never read.
    bad = write_config("[store]\nurl = 7\n", "bad.toml")
    assert run("--config", str(bad), "senders", "--config", str(path)).returncode == EX_OK
    proc = run("--config", str(bad), "senders")
    assert proc.returncode == EX_CONFIG
    assert one_line(proc).startswith(f"extrusion: config error: {bad}")


def test_a_relative_store_path_is_the_config_files_and_named_absolute(
    write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    path = write_config('[store]\nurl = "sqlite:///var/extrusion.db"\n')
    store = tmp_path / "var" / "extrusion.db"  # beside the config, wherever we run from
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run("senders", "--config", str(path), cwd=elsewhere)
    assert proc.returncode == EX_OK
    assert one_line(proc) == (f"extrusion: store sqlite:///{store} "
                              "(not there yet: a new, empty store)")
    held = run("hold", "ip:192.0.2.9", "-r", "test", "--config", str(path), cwd=elsewhere)
    assert held.returncode == EX_OK, held.stderr
    # From another directory the same store, with the sender just held in it.
    again = run("senders", "--config", str(path), cwd=tmp_path)
    assert one_line(again) == f"extrusion: store sqlite:///{store}"
    assert "ip:192.0.2.9" in again.stdout
    assert not (elsewhere / "var").exists()
    quiet = run("-q", "senders", "--config", str(path), cwd=elsewhere)
    assert quiet.returncode == EX_OK and quiet.stderr == ""


def test_the_default_store_is_absolute(tmp_path: Path) -> None:
    from extrusion import config as configmod

    installed = tmp_path / "extrusion.toml"  # as /etc/extrusion/extrusion.toml
    installed.write_text("")
    cfg = configmod.load(installed)
    assert cfg.store.url == "sqlite:////var/lib/extrusion/extrusion.db"
    assert cfg.store.spool_dir == "/var/lib/extrusion/spool"
    # The checkout's own file (what `make run` uses): the checkout's var/, no root needed.
    checkout = configmod.load(configmod.CHECKOUT_PATH)
    var = configmod.CHECKOUT_PATH.parent.parent / "var"
    assert checkout.store.url == f"sqlite:///{var / 'extrusion.db'}"
    assert checkout.store.spool_dir == str(var / "spool")


def test_every_exit_status_is_in_the_readme_table_and_named_from_os() -> None:
    import re

    from extrusion import exits

    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text()
    section = readme.split("### Exit statuses", 1)[1]
    table = section[section.index("| status"):].split("\n\n", 1)[0]
    rows = {int(m.group(1)) for m in re.finditer(r"^\| (\d+) \|", table, re.M)}
    assert rows == {getattr(exits, name) for name in exits.__all__}
    # No module spells a sysexits status as a bare number.
    bare = re.compile(r"^EX_[A-Z]+ = (6[4-9]|7[0-8])\b", re.M)
    offenders = [str(p.relative_to(repo)) for p in (repo / "extrusion").rglob("*.py")
                 if bare.search(p.read_text())]
    assert offenders == []
