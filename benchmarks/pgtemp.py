"""A throw-away PostgreSQL database for a benchmark run (created, then dropped)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

PG_ADMIN = os.environ.get("EXTRUSION_TEST_PG",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# Several people benchmarking on one server tell their databases apart by this.
PREFIX = os.environ.get("EXTRUSION_PG_PREFIX", "extrusion_bench_")


@contextmanager
def pg_database() -> Iterator[str]:
    """The URL of a new, empty database on the benchmark's server, dropped afterwards."""
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
