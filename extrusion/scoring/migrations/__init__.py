"""Alembic migrations of the store (run by `Store.upgrade()` and `extrusion db upgrade`)."""
