"""Interned names (`names`): sender keys, MTA host names, HELO and client names stored
once each, referred to by id from `messages`, `counters` and `sender_days` (issue 20:
a sender's text in every row and index entry was a third of a quiet store).

The ids come from the database (an upsert), so processes and hosts sharing one store
agree on them; each process caches the ids it has seen. An id learnt inside a write
transaction is cached only once that transaction commits (a rolled-back insert leaves no
row for the id to name).

Each name carries `seen`, the last day (of the written rows' time) a write used it, and
the prune deletes names not seen since before the retention boundary (`expiry`): a bot
making up a HELO per message grows `names` only for as long as its messages are kept.
That needs no search for references, because every row that can still name an id was
written on a day that marked it seen: a process's cache is emptied when the day of its
writes moves on, so its first use of a name each day goes to the database and moves
`seen` forward (a row lock on PostgreSQL, which a concurrent prune's DELETE waits for and
then re-checks), and rows outlive the retention boundary by at most a day (`sender_days`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from extrusion.scoring import schema
from extrusion.scoring.dialects import WritePath, chunks
from extrusion.scoring.sqltext import marks

NAME_UPSERT = ("INSERT INTO names (name, seen) VALUES (?, ?) ON CONFLICT (name) "
               "DO UPDATE SET seen = excluded.seen WHERE names.seen < excluded.seen")
DAY = 86400
# Names not seen for this many days before the retention boundary are deleted: a day for
# `sender_days` rows (kept until their day has ended), a day for hosts' clocks.
GRACE_DAYS = 2
CACHED = 200_000  # ids a process keeps (a bot making up a HELO per message grows names)


class Names:
    """One process's cache of name ids (shared by its threads)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._day = 0  # the day the cached names were last marked seen

    def interning(self, day: int) -> Interning:
        """The names of one write transaction whose rows' latest time falls on `day`."""
        if day > self._day:  # a new day: each name marked seen again at its first use
            self._ids.clear()
            self._day = day
        return Interning(self._ids, day)

    def learn(self, done: Interning) -> None:
        """`done`'s transaction committed: its ids are kept (unless its rows were of an
        earlier day than the cache's, whose names may not be marked seen that late)."""
        if done.day < self._day:
            return
        if len(self._ids) + len(done.pending) > CACHED:
            self._ids.clear()
        self._ids.update(done.pending)


class Interning:
    """Name ids looked up or inserted inside one write transaction."""

    def __init__(self, known: dict[str, int], day: int) -> None:
        self._known = known
        self.day = day
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
            stored = _select(conn, path, missing)
            # New names, and names not yet marked seen on this day: upserted, then read
            # again (a prune may have deleted a stale one since: it comes back new).
            stale = [n for n in missing if stored.get(n, (0, -1))[1] < self.day]
            if stale:
                conn.exec_driver_sql(path.sql(NAME_UPSERT), [(n, self.day) for n in stale])
                stored.update(_select(conn, path, stale))
            found = {n: i for n, (i, _) in stored.items()}
            self.pending.update(found)
            out.update(found)
        return out


def _select(conn: Connection, path: WritePath, names: list[str]
            ) -> dict[str, tuple[int, int]]:
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    found: dict[str, tuple[int, int]] = {}
    try:
        for chunk in chunks(names):
            cursor.execute(path.sql(f"SELECT name, id, seen FROM names WHERE name IN "
                                    f"({marks(len(chunk))})"), tuple(chunk))
            found.update((n, (int(i), int(d))) for n, i, d in cursor.fetchall())
    finally:
        cursor.close()
    return found


def day_of(t: float) -> int:
    """The day number (days since the epoch) of time `t`."""
    return int(t // DAY)


def expiry_day(before: float) -> int:
    """Names last seen before this day are deleted by a prune whose boundary is `before`."""
    return day_of(before) - GRACE_DAYS


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
