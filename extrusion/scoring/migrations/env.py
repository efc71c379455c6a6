"""Alembic environment: always run online, on the connection the store hands over.

The store calls Alembic programmatically (no alembic.ini) and passes its own
open connection in `config.attributes["connection"]`, so a migration runs in
the store's transaction and under its lock.
"""

from __future__ import annotations

from alembic import context

from extrusion.scoring.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by running alembic by hand
    raise RuntimeError("extrusion migrations run through Store.upgrade() or `extrusion db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
