"""Fill and prune packedschema's layout as the engine would (storesize.py --layout packed).

The traffic is storesize's own, flushed once a second of its clock as `storesize.run`
does: a flush inserts its new messages (a recipient whose outcome is in the same flush
is packed with it, as the store elides "queued" rows) and rewrites, with one UPDATE per
message, the row of each earlier message an outcome of the flush belongs to. Counters,
senders, audit rows and rate use are copied from the current layout's store filled by
the engine from the same traffic. The prune folds and deletes what `Store.prune` folds
and deletes; minute counters older than two hours are deleted where the messages kept
in detail cover the counters' longest window, and summed into hours where they do not.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from packedschema import (
    COUNTER_CODE,
    DELIVERED,
    NULL_SENDER,
    STATUS_CODE,
    Rcpt,
    build,
    finals,
    pack,
)
from sqlalchemy.dialects import postgresql, sqlite

from extrusion.scoring import schema
from extrusion.scoring.classify import classify
from extrusion.scoring.events import Outcome, Submission
from extrusion.scoring.retention import counter_boundary, detail_boundary

MTA = "mx1.example.net"
DAY = 86400
HOUR = 3600
MINUTES_KEPT = 2 * HOUR  # minute counters younger than this stay minutes
READ_BACK = DAY  # the counters' longest window (retention.counter_boundary's read_back)
COPIED = (schema.senders, schema.state_changes, schema.rate_use)
MessageKey = tuple[int, str]


class PackedStore:
    """One database in the proposed layout, written flush by flush."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.md = build(self.dialect)
        self.md.create_all(self.engine)
        schema.metadata.create_all(self.engine, tables=list(COPIED))
        self.t = self.md.tables
        self.ids: dict[str, int] = {}
        self.live: dict[MessageKey, tuple[float, list[Rcpt]]] = {}
        self.updates = 0

    def close(self) -> None:
        self.engine.dispose()

    def name_id(self, name: str, new: list[dict[str, Any]]) -> int:
        n = self.ids.get(name)
        if n is None:
            n = self.ids[name] = len(self.ids) + 1
            new.append({"id": n, "name": name})
        return n

    def flush(self, subs: list[Submission], outs: list[Outcome]) -> None:
        names: list[dict[str, Any]] = []
        mta = self.name_id(MTA, names)
        rows: dict[MessageKey, dict[str, Any]] = {}
        for s in subs:
            key = (mta, s.queue_id)
            rcpts = [Rcpt(r) for r in s.recipients]
            self.live[key] = (s.time, rcpts)
            # The engine judges auto replies and list posts from headers; this traffic
            # has none, so only the null sender can be set.
            flags = 0 if s.envelope_from else NULL_SENDER
            rows[key] = {
                "mta_id": mta, "queue_id": s.queue_id, "time": s.time,
                "sender_id": self.name_id(s.sender, names), "size": s.size,
                "rcpt_count": len(s.recipients), "flags": flags,
                "envelope_from": s.envelope_from,
                "helo_id": self.name_id(s.helos[0] if s.helos else "", names),
                "client_name_id": self.name_id(s.client_name, names),
                "client_addr": s.client_addr, "list_id": "", "rcpts": ""}
        changed: set[MessageKey] = set()
        for o in outs:
            key = (mta, o.queue_id)
            t, rcpts = self.live[key]
            i = next(i for i, r in enumerate(rcpts) if r.address == o.recipient)
            code = STATUS_CODE[o.status.value]
            # Not kept: a delivery's reply ("250 2.0.0 Ok: queued as ..."; a report's reader
            # looks for a failure's), the relay and the Message-ID (nothing reads them).
            rcpts[i] = Rcpt(o.recipient, code, round((o.time - t) * 1000), o.dsn,
                            classify(o.status, o.dsn, o.reply).value,
                            "" if code in DELIVERED else o.reply)
            if key not in rows:
                changed.add(key)
        for key, row in rows.items():
            rcpts = self.live[key][1]
            row["rcpts"] = pack(rcpts)
            row["delivered"], row["failed"] = finals(rcpts)
        m = self.t["messages"]
        with self.engine.begin() as conn:
            if names:
                conn.execute(self.t["names"].insert(), names)
            if rows:
                conn.execute(m.insert(), list(rows.values()))
            if changed:
                # One UPDATE per message per flush: the whole packed text again.
                conn.execute(
                    m.update().where(m.c.mta_id == sa.bindparam("k_mta"),
                                     m.c.queue_id == sa.bindparam("k_qid"))
                    .values(rcpts=sa.bindparam("k_rcpts"), delivered=sa.bindparam("k_d"),
                            failed=sa.bindparam("k_f")),
                    [{"k_mta": k[0], "k_qid": k[1], "k_rcpts": pack(self.live[k][1]),
                      **dict(zip(("k_d", "k_f"), finals(self.live[k][1]), strict=True))}
                     for k in sorted(changed)])
                self.updates += len(changed)

    def copy_from(self, url: str) -> None:
        """The tables the proposal keeps as they are, and the counters re-keyed."""
        src = sa.create_engine(url)
        try:
            with src.connect() as conn, self.engine.begin() as out:
                for table in COPIED:
                    rows = [dict(r) for r in conn.execute(sa.select(table)).mappings()]
                    if rows:
                        out.execute(table.insert(), rows)
                names: list[dict[str, Any]] = []
                counters = [
                    {"sender_id": self.name_id(s, names), "name": COUNTER_CODE[n],
                     "bucket": b, "value": v}
                    for s, n, b, v in conn.execute(sa.text(
                        "SELECT sender, name, bucket, value FROM counters"))]
                if names:
                    out.execute(self.t["names"].insert(), names)
                if counters:
                    out.execute(self.t["counters"].insert(), counters)
        finally:
            src.dispose()

    def prune(self, now: float, detail_days: float) -> None:
        before = detail_boundary(now, detail_days)
        minutes_from = int(now - MINUTES_KEPT) // HOUR * HOUR
        with self.engine.begin() as conn:
            self._fold(conn, before)
            if before <= now - READ_BACK:  # the messages' rows answer every longer window
                c = self.t["counters"]
                conn.execute(c.delete().where(c.c.bucket < minutes_from))
            else:
                self._counters(conn, counter_boundary(now, detail_days), minutes_from)

    def _fold(self, conn: Any, before: float) -> None:
        m, d = self.t["messages"], self.t["sender_days"]
        days: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        for sender, t, n, delivered, failed in conn.execute(
                sa.select(m.c.sender_id, m.c.time, m.c.rcpt_count, m.c.delivered, m.c.failed)
                .where(m.c.time < before)):
            day = int(t // DAY) * DAY
            v = days[(sender, day)]
            v[0] += 1
            v[1] += n
            v[2] += delivered
            v[3] += failed
            v[4] |= 1 << min(int((t - day) // HOUR), 23)
        conn.execute(m.delete().where(m.c.time < before))
        cols = ("messages", "recipients", "delivered", "failed", "hours")
        if days:
            ins = (sqlite.insert(d) if self.dialect == "sqlite" else postgresql.insert(d))
            set_ = {c: d.c[c] + ins.excluded[c] for c in cols[:4]}
            set_["hours"] = d.c.hours.op("|")(ins.excluded.hours)
            conn.execute(ins.on_conflict_do_update(index_elements=[d.c.sender_id, d.c.day],
                                                   set_=set_),
                         [{"sender_id": s, "day": day, **dict(zip(cols, v, strict=True))}
                          for (s, day), v in sorted(days.items())])

    def _counters(self, conn: Any, before: float, minutes_from: int) -> None:
        c = self.t["counters"]
        conn.execute(c.delete().where(c.c.bucket < int(before)))
        sums: dict[tuple[int, int, int], float] = defaultdict(float)
        old = c.c.bucket < minutes_from
        for s, n, b, v in conn.execute(sa.select(c.c.sender_id, c.c.name, c.c.bucket,
                                                 c.c.value).where(old)):
            sums[(s, n, int(b) // HOUR * HOUR)] += v
        conn.execute(c.delete().where(old))
        if sums:
            conn.execute(c.insert(), [{"sender_id": s, "name": n, "bucket": b, "value": v}
                                      for (s, n, b), v in sorted(sums.items())])


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The store's own (scoring/database.py): a commit per flush without an fsync each."""
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def fill(store: PackedStore, traffic: list[tuple[float, int, Any]], start: float) -> float:
    """The traffic flushed once a second of its clock (storesize.run's schedule); the
    clock at the end."""
    next_flush = start + 1.0
    subs: list[Submission] = []
    outs: list[Outcome] = []
    clock = start
    for t, _, ev in traffic:
        if t >= next_flush:
            store.flush(subs, outs)
            subs, outs = [], []
            next_flush = float(int(t) + 1)
        clock = t
        (subs if isinstance(ev, Submission) else outs).append(ev)
    store.flush(subs, outs)
    return clock
