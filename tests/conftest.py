"""Shared fixtures: store URLs for both backends, config files, free loopback ports.

PostgreSQL tests use one throw-away database per test run, dropped at the end.
With CI=true an unreachable PostgreSQL or a missing driver fails the run;
elsewhere those tests skip with the reason (tests/test_conftest.py shows both).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from tests.helpers import missing

# Session fixtures `postfix` (throw-away Postfix on loopback) and `remote_smtp`.
from tests.postfix_harness import postfix, remote_smtp  # noqa: F401

PG_ADMIN_URL = os.environ.get(
    "EXTRUSION_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REPO = Path(__file__).resolve().parent.parent


def pg_admin() -> sqlalchemy.Engine:
    """An engine on the admin database; a missing driver is `missing()` (a skip outside CI)."""
    try:
        return sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    except ImportError as exc:  # the driver (psycopg, extra "postgres") is not installed
        missing(f"PostgreSQL driver for {PG_ADMIN_URL} not installed ({exc}); "
                "pip install -e '.[postgres]'")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run; yields its SQLAlchemy URL."""
    # A prefix of one's own (EXTRUSION_PG_PREFIX) tells apart the databases of runs
    # sharing one server.
    name = f"{os.environ.get('EXTRUSION_PG_PREFIX', 'extrusion_test_')}{uuid.uuid4().hex[:12]}"
    admin = pg_admin()
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        admin.dispose()
        missing(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.__class__.__name__}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store test runs once per backend. PostgreSQL tables are dropped before and
    after each test: a test that used the session's database directly (`pg_database`)
    may have left rows behind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'extrusion.db'}"
        return
    url: str = request.getfixturevalue("pg_database")
    _reset_postgres(url)
    yield url
    _reset_postgres(url)


def _reset_postgres(url: str) -> None:
    import sqlalchemy

    eng = sqlalchemy.create_engine(url)
    try:
        with eng.begin() as conn:
            tables = conn.execute(
                sqlalchemy.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ).scalars().all()
            for t in tables:
                conn.execute(sqlalchemy.text(f'DROP TABLE IF EXISTS "{t}" CASCADE'))
    finally:
        eng.dispose()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def write_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a config file from TOML text into the test dir; returns its path."""

    def write(text: str, name: str = "extrusion.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
