"""The PostgreSQL fixture: with CI=true a missing server or driver is an error,
elsewhere a skip that says why.

Each case runs pytest on a one-test file in a child process, against a port
where nothing listens (a server that is down, for real) or with the driver's
import blocked (the one fault faked: uninstalling psycopg is not an option).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, free_port

INNER_CONFTEST = """
import os
import sys

if os.environ.get("BLOCK_PSYCOPG"):
    sys.modules["psycopg"] = None  # `import psycopg` now raises ImportError

from tests.conftest import pg_database  # noqa: E402,F401
"""

INNER_TEST = """
def test_needs_postgres(pg_database):
    assert pg_database.startswith("postgresql")
"""


def run_inner(tmp_path: Path, *, ci: bool, block_driver: bool = False) -> tuple[int, str]:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "BLOCK_PSYCOPG")}
    env["PYTHONPATH"] = str(REPO)
    env["EXTRUSION_TEST_PG"] = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    if ci:
        env["CI"] = "true"
    if block_driver:
        env["BLOCK_PSYCOPG"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "bt"),
         str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("block_driver", [False, True], ids=["server-down", "no-driver"])
def test_missing_postgres_is_an_error_in_ci(tmp_path: Path, block_driver: bool) -> None:
    status, out = run_inner(tmp_path, ci=True, block_driver=block_driver)
    assert status == 1, out
    assert "1 error" in out and "CI=true: required" in out, out
    assert ("driver" if block_driver else "unreachable") in out, out


@pytest.mark.parametrize("block_driver", [False, True], ids=["server-down", "no-driver"])
def test_missing_postgres_is_a_skip_with_its_reason_outside_ci(
    tmp_path: Path, block_driver: bool
) -> None:
    status, out = run_inner(tmp_path, ci=False, block_driver=block_driver)
    assert status == 0, out
    assert "1 skipped" in out, out
    reason = "PostgreSQL driver" if block_driver else "PostgreSQL unreachable at"
    assert "SKIPPED [1] " in out and reason in out, out
