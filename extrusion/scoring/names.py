"""Interned names (`names`): sender keys, MTA host names, HELO and client names stored
once each, referred to by id from `messages`, `counters` and `sender_days` (issue 20:
a sender's text in every row and index entry was a third of a quiet store).

The ids come from the database (an upsert, ON CONFLICT DO NOTHING), so processes and
hosts sharing one store agree on them; each process caches the ids it has seen. An id
learnt inside a write transaction is cached only once that transaction commits (a
rolled-back insert leaves no row for the id to name).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.scoring import schema
from extrusion.scoring.dialects import WritePath, chunks
from extrusion.scoring.sqltext import marks

NAME_UPSERT = "INSERT INTO names (name) VALUES (?) ON CONFLICT (name) DO NOTHING"
CACHED = 200_000  # ids a process keeps (a bot making up a HELO per message grows names)


class Names:
    """One process's cache of name ids (shared by its threads)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def interning(self) -> Interning:
        """The names of one write transaction."""
        return Interning(self._ids)

    def learn(self, done: Interning) -> None:
        """`done`'s transaction committed: its ids are kept."""
        if len(self._ids) + len(done.pending) > CACHED:
            self._ids.clear()
        self._ids.update(done.pending)


class Interning:
    """Name ids looked up or inserted inside one write transaction."""

    def __init__(self, known: dict[str, int]) -> None:
        self._known = known
        self.pending: dict[str, int] = {}

    def ids(self, conn: Connection, path: WritePath, names: Iterable[str]) -> dict[str, int]:
        """{name: id} for `names`, the missing ones inserted."""
        out: dict[str, int] = {}
        missing: list[str] = []
        for n in set(names):
            i = self._known.get(n)
            if i is None:
                i = self.pending.get(n)
            if i is None:
                missing.append(n)
            else:
                out[n] = i
        if missing:
            missing.sort()  # one lock order for every writer
            found = _select(conn, path, missing)
            new = [n for n in missing if n not in found]
            if new:
                conn.exec_driver_sql(path.sql(NAME_UPSERT), [(n,) for n in new])
                found.update(_select(conn, path, new))
            self.pending.update(found)
            out.update(found)
        return out


def _select(conn: Connection, path: WritePath, names: list[str]) -> dict[str, int]:
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    found: dict[str, int] = {}
    try:
        for chunk in chunks(names):
            cursor.execute(path.sql(f"SELECT name, id FROM names WHERE name IN "
                                    f"({marks(len(chunk))})"), tuple(chunk))
            found.update((n, int(i)) for n, i in cursor.fetchall())
    finally:
        cursor.close()
    return found


def lookup(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """{name: id} of the stored names among `names` (a reader's: inserts nothing)."""
    t = schema.names
    out: dict[str, int] = {}
    for chunk in chunks(sorted(set(names))):
        out.update((n, int(i)) for n, i in conn.execute(
            sa.select(t.c.name, t.c.id).where(t.c.name.in_(chunk))))
    return out


def lookup_one(conn: Connection, name: str) -> int | None:
    return lookup(conn, (name,)).get(name)


def text_of(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    """{id: name} of these ids (a reader's)."""
    t = schema.names
    out: dict[int, str] = {}
    for chunk in chunks(sorted(set(ids))):
        out.update((int(i), n) for i, n in conn.execute(
            sa.select(t.c.id, t.c.name).where(t.c.id.in_(chunk))))
    return out
