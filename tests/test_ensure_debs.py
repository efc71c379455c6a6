"""`scripts/ensure-debs` waits for the dpkg lock another apt holds instead of failing at once.

Holding the real dpkg lock would stall every other apt on the machine (and the real
install needs the network), so apt-get is the one fake here: it behaves as apt-get does
while unattended-upgrades holds the lock, unless it is told to wait.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ensure-debs"

FAKE_APT = """#!/bin/sh
echo "$@" >> "{log}"
case "$*" in
    *DPkg::Lock::Timeout=*) exit 0 ;;
esac
echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242" >&2
exit 100
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("ensure-debs installs only as root")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "apt-get").write_text(FAKE_APT.format(log=tmp_path / "apt.log"))
    # debconf-set-selections would write the machine's debconf database.
    (bindir / "debconf-set-selections").write_text("#!/bin/sh\ncat >/dev/null\n")
    for name in ("apt-get", "debconf-set-selections"):
        (bindir / name).chmod(0o755)
    return bindir


def test_apt_is_told_to_wait_for_the_dpkg_lock(fake_bin: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}",
           "DPKG_LOCK_TIMEOUT": "7"}
    proc = subprocess.run([str(SCRIPT), "extrusion-no-such-package"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "waiting up to 7s for another apt or dpkg to finish" in proc.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert len(calls) == 2
    assert all(call.startswith("-o DPkg::Lock::Timeout=7 ") for call in calls)
    assert calls[1].endswith("extrusion-no-such-package")
