"""Schema migrations: the Alembic runner the store calls when it opens (and the CLI's
`store upgrade`), one process at a time. A new store skips them: it is created from
`schema` and stamped at the head revision."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.scoring import schema
from extrusion.scoring.database import Database, StoreUnavailable
from extrusion.scoring.dialects import WritePath

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
CREATE_RETRY_SECONDS = 0.05  # between attempts while another process creates the store
# The newest migration's revision (a test holds it to Alembic's head): a store already
# there, or a new one, is then opened without loading Alembic and its scripts.
HEAD_REVISION = "0009"
# Alembic's own revision table, as Alembic creates it (its name, column and key name).
_VERSION = sa.Table(
    "alembic_version", sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def _alembic_config() -> AlembicConfig:
    # Imported when needed: Alembic is a second or so of start-up nobody else pays.
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, path: WritePath, target: str = "head") -> str:
    """Apply the migrations up to `target`; returns the schema revision now in place."""
    with db.write() as conn:
        path.lock_migrations(conn)
        tables = sa.inspect(conn).get_table_names()
        if target == "head" and not tables:
            # A new store is the schema module's tables, stamped at the head: what every
            # migration in turn would make (tests/test_store_schema.py holds them equal),
            # in a fifth of the time.
            schema.metadata.create_all(conn)
            _VERSION.create(conn)
            conn.execute(_VERSION.insert(), {"version_num": HEAD_REVISION})
            return HEAD_REVISION
        wanted = HEAD_REVISION if target == "head" else target
        if "alembic_version" in tables and _stored_revision(conn) == wanted:
            return wanted
        return _alembic_upgrade(conn, target)


def _stored_revision(conn: Connection) -> str | None:
    """The schema revision recorded in the store (Alembic's table, read directly)."""
    return conn.execute(sa.select(_VERSION.c.version_num)).scalar()


def _alembic_upgrade(conn: Connection, target: str) -> str:
    from alembic import command

    cfg = _alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, target)
    return current_revision(conn) or ""


def create(db: Database, path: WritePath, busy_timeout_ms: int) -> None:
    """Bring the schema up to date, waiting out another process creating it too.

    Two processes opening a new SQLite file at once race to switch it to WAL
    and to migrate it; SQLite can answer the loser "database is locked" at
    once instead of calling the busy handler. Seen under load in CI.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000.0
    while True:
        try:
            upgrade(db, path)
            return
        except StoreUnavailable as e:
            if (db.dialect != "sqlite" or "locked" not in str(e)
                    or time.monotonic() > deadline):
                raise
            db.close()  # a connection half set up must not be reused
            time.sleep(CREATE_RETRY_SECONDS)
