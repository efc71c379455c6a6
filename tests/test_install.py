"""`make install` into a temporary root (DESTDIR), as a package build or CI does it.

The command lands in its own venv under /opt/extrusion with a link in
/usr/local/bin, the config in /etc/extrusion (never overwriting one already
there), the systemd units with ExecStart naming that link, the tmpfiles snippet
and the docs. `systemd-analyze verify --root` then checks the units as systemd
would load them from that root, including that each ExecStart is executable there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = {"extrusion.service": "serve", "extrusion-milter.service": "milter",
         "extrusion-policyd.service": "policyd"}
MAKE = shutil.which("make")
ANALYZE = shutil.which("systemd-analyze")
# The host's own units and kill(1), copied into the root: the units need the targets they
# are ordered against (sysinit.target, multi-user.target) and ExecReload's /bin/kill.
HOST_UNITS = Path("/usr/lib/systemd/system")
# The install and its venv alone: the compiled pass of `make test` sets PYTHONPATH to its
# copy of the checkout, which would otherwise be what the installed python imports.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
INSTALL_SECONDS = 720  # a venv with matplotlib, a pymilter build and the mypyc build


def needed(tool: str | None, name: str) -> str:
    if tool is None:
        reason = f"{name} is not installed"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + " (CI=true: the install test is required)")
        pytest.skip(reason)
    return tool


def make(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([needed(MAKE, "make"), "-s", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False, env=CLEAN_ENV)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full `make install DESTDIR=...` for the module (it builds a venv: a minute)."""
    dest = tmp_path_factory.mktemp("root")
    make("install", f"DESTDIR={dest}", timeout=INSTALL_SECONDS)
    return dest


@pytest.mark.timeout(INSTALL_SECONDS + 60)
def test_the_command_is_a_venv_under_opt_linked_from_usr_local_bin(root: Path) -> None:
    link = root / "usr/local/bin/extrusion"
    assert link.is_symlink() and os.readlink(link) == "/opt/extrusion/bin/extrusion"
    script = root / "opt/extrusion/bin/extrusion"
    assert os.access(script, os.X_OK)
    # Staged under DESTDIR, but every path inside names where it will run from.
    assert script.read_text().splitlines()[0] == "#!/opt/extrusion/bin/python3"
    for text in (script, root / "opt/extrusion/bin/activate", root / "opt/extrusion/pyvenv.cfg"):
        assert str(root) not in text.read_text(), text
    # The venv works and holds the command with the milter's C module and the extras.
    check = subprocess.run(  # from the root, not the checkout
        [root / "opt/extrusion/bin/python", "-c",
         "import milter, psycopg, matplotlib, extrusion.cli; print(extrusion.cli.__file__)"],
        capture_output=True, text=True, timeout=60, check=False, cwd=root, env=CLEAN_ENV,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"{root}/opt/extrusion/lib/")


@pytest.mark.timeout(INSTALL_SECONDS + 60)
def test_the_installed_hot_modules_are_compiled(root: Path) -> None:
    # setup.py compiles mypyc-modules.txt's modules in a non-editable install.
    check = subprocess.run(
        [root / "opt/extrusion/bin/python", "-c",
         "import extrusion.maillog.feed as f, extrusion.scoring.judge as j;"
         "print(f.__file__); print(j.__file__)"],
        capture_output=True, text=True, timeout=60, check=False, cwd=root, env=CLEAN_ENV,
    )
    assert check.returncode == 0, check.stderr
    files = check.stdout.split()
    assert len(files) == 2 and all(".so" in name and "/site-packages/" in name
                                   for name in files), files


@pytest.mark.timeout(INSTALL_SECONDS + 60)
def test_config_units_tmpfiles_and_docs_are_in_place(root: Path) -> None:
    shipped = (REPO / "conf/extrusion.toml").read_text()
    assert (root / "etc/extrusion/extrusion.toml").read_text() == shipped
    for unit, command in UNITS.items():
        text = (root / "etc/systemd/system" / unit).read_text()
        assert (f"ExecStart=/usr/local/bin/extrusion {command} "
                "--config /etc/extrusion/extrusion.toml\n") in text
        assert "Documentation=file:///usr/local/share/doc/extrusion/README.md" in text
    assert ((root / "usr/lib/tmpfiles.d/extrusion.conf").read_text()
            == (REPO / "conf/systemd/extrusion.tmpfiles.conf").read_text())
    docs = root / "usr/local/share/doc/extrusion"
    assert (docs / "README.md").is_file() and (docs / "logrotate.README").is_file()
    assert (docs / "examples/main.cf.snippet").is_file()


@pytest.mark.timeout(INSTALL_SECONDS + 120)
def test_installed_units_pass_systemd_analyze_verify(root: Path, tmp_path: Path) -> None:
    analyze = needed(ANALYZE, "systemd-analyze")
    if not (HOST_UNITS / "multi-user.target").is_file():
        pytest.skip(f"no systemd units on this host ({HOST_UNITS}) to verify against")
    if not (root / "usr/lib/systemd/system").exists():
        shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
        (root / "usr/bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2("/usr/bin/kill", root / "usr/bin/kill")
        (root / "bin").symlink_to("usr/bin")

    def verify(unit: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([analyze, "verify", f"--root={root}", unit], capture_output=True,
                              text=True, timeout=60, check=False)

    for unit in UNITS:
        proc = verify(unit)
        assert (proc.returncode, proc.stdout + proc.stderr) == (0, ""), unit
    # The check bites: a unit whose ExecStart names a path the install did not fill.
    wrong = root / "etc/systemd/system/extrusion-wrong.service"
    wrong.write_text((root / "etc/systemd/system/extrusion.service").read_text()
                     .replace("ExecStart=/usr/local/bin/", "ExecStart=/usr/bin/"))
    try:
        proc = verify(wrong.name)
    finally:
        wrong.unlink()
    assert proc.returncode != 0
    assert "/usr/bin/extrusion is not executable" in proc.stderr


@pytest.mark.timeout(INSTALL_SECONDS + 60)
def test_a_second_install_keeps_the_operators_config(root: Path) -> None:
    config = root / "etc/extrusion/extrusion.toml"
    edited = config.read_text() + "\n# edited by the postmaster\n"
    config.write_text(edited)
    proc = make("install-files", f"DESTDIR={root}")
    assert config.read_text() == edited
    assert ((root / "etc/extrusion/extrusion.toml.dist").read_text()
            == (REPO / "conf/extrusion.toml").read_text())
    assert "kept /etc/extrusion/extrusion.toml" in proc.stdout


def test_units_follow_another_prefix(tmp_path: Path) -> None:
    make("install-files", f"DESTDIR={tmp_path}", "PREFIX=/usr")
    text = (tmp_path / "etc/systemd/system/extrusion.service").read_text()
    assert "ExecStart=/usr/bin/extrusion serve --config /etc/extrusion/extrusion.toml\n" in text
    assert "Documentation=file:///usr/share/doc/extrusion/README.md" in text
    assert "/usr/local/" not in text
    assert (tmp_path / "usr/share/doc/extrusion/README.md").is_file()
