"""The failure window shared by the hosts of one store: the ">20 failures" trigger
holds for the cluster, not once per host.

A bot spread round-robin over three smarthosts fails a third of its recipients
on each; with per-host windows each host sees 14 of 42 failures and none
reaches `[scoring] failure_trigger`. So a host writes a snapshot of a
sender's failure window (distinct failed and attempted recipients, and when)
into `failure_windows`, one row per sender and host, replaced at each flush
while the sender's window changes here; the other hosts read them back at
each flush while such a sender is in play here or elsewhere and at each
refresh, and the judge adds them to its own counts (`Judge.count_failure`).
The lag is one flush interval (about a second), as for shared budgets
(scoring/shared.py).

Why snapshots of the window and not per-minute deltas: the trigger counts
distinct recipients within a window, which is what a host's window holds; a
row per sender and host bounds the table by the senders that fail at all.
Only a sender with at least `[store] shared_failures_from` distinct failures
here is written (every customer has a dead address now and then; one row per
sender per flush for those would be the noise, not the signal), so a bot can
stay unseen with fewer than that many on each host. A snapshot counts until
it is a window old (the other host may not speak of a quiet sender again),
and never from before an operator's release of the sender.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from extrusion.scoring import schema
from extrusion.scoring.memory import SenderMemory

PRUNE_SECONDS = 600.0  # how often a host drops its own rows older than the window
NO_FAILURES = (0, 0)
MAX_PENDING = 100_000  # snapshots kept for the next flush while the store is away


@dataclass(frozen=True, slots=True)
class Snapshot:
    sender: str
    failed: int
    attempted: int
    time: float


class FailureShare:
    """The engine's side: which senders' windows to write, and who has others' counts."""

    def __init__(self) -> None:
        self._pending: dict[str, Snapshot] = {}
        # Senders whose last snapshot said something: read by the delivery fast path
        # (outcomefast.py) to tell, without a call, that `note()` would write nothing.
        self.written: set[str] = set()
        self.others: set[str] = set()  # senders whose counts include other hosts'
        self.next_prune = 0.0

    def note(self, mem: SenderMemory, now: float, minimum: int) -> None:
        """After an outcome: the sender's window as it is now, if it is worth a row."""
        failed = mem.failed.count(now)
        if failed < minimum and mem.key not in self.written:
            return
        if len(self._pending) >= MAX_PENDING and mem.key not in self._pending:
            return  # the store away for long: the newest windows of the others will do
        if failed < minimum:
            self.written.discard(mem.key)  # one last word, then silence
        else:
            self.written.add(mem.key)
        self._pending[mem.key] = Snapshot(mem.key, failed, mem.attempted.count(now), now)

    def drain(self) -> list[Snapshot]:
        pending, self._pending = self._pending, {}
        return list(pending.values())

    def restore(self, snapshots: list[Snapshot]) -> None:
        """Put back what a failed write held; a newer snapshot of a sender wins."""
        for s in snapshots:
            self._pending.setdefault(s.sender, s)

    def adopt(self, senders: dict[str, SenderMemory],
              rows: list[tuple[str, int, int, float]]) -> None:
        """Set each sender's count from the other hosts (rows: sender, failed,
        attempted, time); senders no longer in them go back to their own counts."""
        sums: dict[str, tuple[int, int]] = {}
        for sender, failed, attempted, t in rows:
            mem = senders.get(sender)
            if mem is None or t < mem.released_at:
                continue  # unknown here (nothing to trigger), or from before a release
            f, a = sums.get(sender, NO_FAILURES)
            sums[sender] = (f + failed, a + attempted)
        for key in self.others - sums.keys():
            if (mem := senders.get(key)) is not None:
                mem.others_failed = NO_FAILURES
        for key, counts in sums.items():
            senders[key].others_failed = counts
        self.others = set(sums)


def save(conn: Connection, dialect: str, mta: str, snapshots: list[Snapshot]) -> None:
    """Replace this host's rows for these senders (sorted: a fixed lock order)."""
    if not snapshots:
        return
    t = schema.failure_windows
    insert = postgresql.insert(t) if dialect == "postgresql" else sqlite.insert(t)
    stmt = insert.on_conflict_do_update(
        index_elements=[t.c.sender, t.c.mta],
        set_={"failed": insert.excluded.failed, "attempted": insert.excluded.attempted,
              "time": insert.excluded.time})
    conn.execute(stmt, [
        {"sender": s.sender, "mta": mta, "failed": s.failed, "attempted": s.attempted,
         "time": s.time} for s in sorted(snapshots, key=lambda s: s.sender)])


def prune(conn: Connection, mta: str, before: float) -> int:
    """This host's rows older than `before` (only its own: no lock on the others')."""
    t = schema.failure_windows
    return conn.execute(t.delete().where(t.c.mta == mta, t.c.time < before)).rowcount


def others(conn: Connection, mta: str, since: float) -> list[tuple[str, int, int, float]]:
    """The other hosts' snapshots taken since `since` (sender, failed, attempted, time)."""
    t = schema.failure_windows
    q = sa.select(t.c.sender, t.c.failed, t.c.attempted, t.c.time).where(
        t.c.mta != mta, t.c.time >= since)
    return [(r[0], int(r[1]), int(r[2]), float(r[3])) for r in conn.execute(q)]
