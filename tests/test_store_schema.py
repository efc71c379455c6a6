"""A new store is created from `schema.metadata` and stamped at the head instead of
running every migration (`migrate.upgrade`): both ways give the same database, down
to each column's type, default and nullability, each index, key and constraint name
and Alembic's revision table, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from extrusion.scoring import migrate
from extrusion.scoring.store import Store


def test_the_head_revision_constant_is_alembics_head() -> None:
    assert migrate.head_revision() == migrate.HEAD_REVISION


def test_a_new_store_is_what_every_migration_makes(store_url: str) -> None:
    migrated = Store(store_url, create=False)
    try:
        # An explicit target takes Alembic's way, migration after migration.
        assert migrated.upgrade(migrate.HEAD_REVISION) == migrate.HEAD_REVISION
    finally:
        migrated.close()
    by_migrations = catalog(store_url)
    drop_everything(store_url)
    with Store(store_url) as created:
        assert created.revision() == migrate.HEAD_REVISION
    assert catalog(store_url) == by_migrations


def test_a_store_at_the_head_opens_without_migrating(store_url: str) -> None:
    with Store(store_url) as s:
        assert s.upgrade() == migrate.HEAD_REVISION
    before = catalog(store_url)
    with Store(store_url) as s:
        assert s.revision() == migrate.HEAD_REVISION
    assert catalog(store_url) == before


def drop_everything(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for table in sa.inspect(conn).get_table_names():
                conn.exec_driver_sql(f'DROP TABLE "{table}"'
                                     + (" CASCADE" if conn.dialect.name != "sqlite" else ""))
    finally:
        engine.dispose()


def catalog(url: str) -> list[Any]:
    """What the database says its schema is (its own catalog, not SQLAlchemy's view)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                return _sqlite_catalog(conn)
            return _pg_catalog(conn)
    finally:
        engine.dispose()


def _sqlite_catalog(conn: sa.Connection) -> list[Any]:
    out: list[Any] = [sorted(tuple(r) for r in conn.exec_driver_sql(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE type != 'table'"))]
    tables = [r[0] for r in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for t in tables:
        out.append((t, [tuple(r) for r in conn.exec_driver_sql(f"PRAGMA table_xinfo('{t}')")],
                    sorted(tuple(r) for r in
                           conn.exec_driver_sql(f"PRAGMA foreign_key_list('{t}')"))))
        for index in sorted(conn.exec_driver_sql(f"PRAGMA index_list('{t}')"),
                            key=lambda r: r[1]):
            out.append((t, tuple(index[1:]), [tuple(r) for r in conn.exec_driver_sql(
                f"PRAGMA index_xinfo('{index[1]}')")]))
    # An index's WHERE clause (a partial index) is in its SQL text only.
    out.append(sorted(tuple(r) for r in conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index'")))
    return out


_PG_CATALOG = [
    "SELECT table_name, ordinal_position, column_name, data_type, character_maximum_length,"
    " numeric_precision, is_nullable, column_default, is_identity"
    " FROM information_schema.columns WHERE table_schema = 'public'",
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)"
    " FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
    "SELECT sequence_name, data_type, start_value, increment"
    " FROM information_schema.sequences WHERE sequence_schema = 'public'",
    "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace",
    "SELECT event_object_table, trigger_name FROM information_schema.triggers",
]


def _pg_catalog(conn: sa.Connection) -> list[Any]:
    return [sorted(tuple(r) for r in conn.exec_driver_sql(q)) for q in _PG_CATALOG]
