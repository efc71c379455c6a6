"""Operator commands that work directly on the store (`db upgrade`, `senders`, pins).

They need no running daemon: the daemons pick up what these write within
`store.refresh_seconds`.
"""

from __future__ import annotations

from extrusion.config import Config
from extrusion.scoring.store import Store, open_store


def db_upgrade(cfg: Config) -> str:
    """Create or migrate the store; returns a line saying where it stands."""
    store = Store(cfg.store.url, busy_timeout_ms=cfg.store.busy_timeout_ms, create=False)
    try:
        before = store.revision()
        after = store.upgrade()
    finally:
        store.close()
    if before == after:
        return f"store is up to date (revision {after})"
    return f"store upgraded from revision {before or 'none'} to {after}"


__all__ = ["db_upgrade", "open_store"]
