"""The packed layout proposed for issue 20 (benchmarks/packedschema.py), measured by
`storesize.py --layout packed`: its rows must say what the current store's say, or the
bytes it saves are not comparable. The same traffic fills the current store (by the
engine) and the packed one (on each backend); every recipient's outcome, the envelope,
and after a fold the report's totals must read back the same from both."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))  # last: the benchmarks import their siblings by name

import storesize  # noqa: E402
from packedschema import DELIVERED, FAILED, Rcpt, pack, unpack  # noqa: E402
from packedstore import MINUTES_KEPT, PackedStore, fill  # noqa: E402

from extrusion.scoring import batchwrite  # noqa: E402
from extrusion.scoring.retention import counter_boundary, detail_boundary  # noqa: E402
from extrusion.scoring.store import Store  # noqa: E402

SENDERS, MESSAGES, DAYS = 3, 6, 3
DETAIL_DAYS = 2.0  # a day folded, a day thinned, a day as written
HOUR = 3600

ROUND_TRIPS = [
    [Rcpt("a@example.org")],
    [Rcpt("a@example.org", "s", 1234, "2.0.0", "delivered", "250 2.0.0 Ok")],
    [Rcpt("a@example.org", "s", 5, "", "delivered")],  # a delivery logged without a DSN
    [Rcpt("a@example.org", "s", 5, "2.6.0", "delivered")],
    [Rcpt("a@example.org", "b", 0, "5.1.1", "unknown_user", "550 5.1.1 no such user"),
     Rcpt("b@example.org", "d", 900_000, "4.2.0", "", "451 try later"),
     Rcpt("c@example.org")],
]


@pytest.mark.parametrize("rcpts", ROUND_TRIPS)
def test_a_packed_recipient_reads_back_as_written(rcpts: list[Rcpt]) -> None:
    assert unpack(pack(rcpts)) == rcpts


@pytest.fixture
def filled(store_url: str, tmp_path: Path) -> tuple[str, PackedStore, float]:
    """The current store (SQLite, by the engine) and the packed one (each backend),
    from one traffic; the traffic's last second."""
    batchwrite.ELIDE_QUEUED = True
    traffic = storesize.events(SENDERS, MESSAGES, days=DAYS)
    current = f"sqlite:///{tmp_path / 'current.db'}"
    now = storesize.run(current, traffic, str(tmp_path / "spool"))
    packed = PackedStore(store_url)
    fill(packed, traffic, storesize.T0)
    packed.copy_from(current)
    return current, packed, now


def packed_rows(packed: PackedStore, sender: str) -> dict[str, sa.Row[tuple[object, ...]]]:
    m = packed.t["messages"]
    with packed.engine.connect() as conn:
        return {r.queue_id: r for r in conn.execute(
            sa.select(m).where(m.c.sender_id == packed.ids[sender]))}


def test_every_outcome_and_envelope_reads_back_the_same(
        filled: tuple[str, PackedStore, float]) -> None:
    current, packed, _ = filled
    names = {n: name for name, n in packed.ids.items()}
    try:
        with Store(current) as store:
            seen = 0
            for s in range(SENDERS):
                sender = f"sasl:customer{s:05d}@example.net"
                rows = packed_rows(packed, sender)
                stored = store.messages(sender)
                assert len(stored) == len(rows) == MESSAGES * DAYS
                for msg in stored:
                    row = rows[msg.queue_id]
                    assert (row.time, row.envelope_from, names[row.helo_id], row.client_addr,
                            names[row.client_name_id], row.size, row.rcpt_count) == (
                        msg.time, msg.envelope_from, msg.helo, msg.client_addr,
                        msg.client_name, msg.size, msg.rcpt_count)
                    got = {r.address: r for r in unpack(row.rcpts)}
                    assert set(got) == {r.recipient for r in msg.recipients}
                    for r in msg.recipients:
                        p = got[r.recipient]
                        # A delivery's reply is not kept; a failure's is.
                        reply = "" if r.status == "sent" else r.reply
                        assert (p.status, p.dsn, p.cls, p.reply) == (
                            r.status[0], r.dsn, r.outcome_class, reply)
                        assert abs(row.time + p.after_ms / 1000 - r.time) <= 0.0005
                        seen += 1
            assert seen > MESSAGES * DAYS * SENDERS  # 1-5 recipients a message
    finally:
        packed.close()


def test_a_fold_leaves_the_same_report_totals(filled: tuple[str, PackedStore, float]) -> None:
    current, packed, now = filled
    try:
        with Store(current) as store:
            store.prune(0.0, detail_before=detail_boundary(now, DETAIL_DAYS),
                        counters_before=counter_boundary(now, DETAIL_DAYS))
            totals = store.report_totals(None, now)
        packed.prune(now, DETAIL_DAYS)
        m, d = packed.t["messages"], packed.t["sender_days"]
        with packed.engine.connect() as conn:
            folded = conn.execute(sa.select(sa.func.count()).select_from(d)).scalar()
            assert folded, "nothing was folded: the test would compare detail only"
            for s in range(SENDERS):
                sender = f"sasl:customer{s:05d}@example.net"
                sid = packed.ids[sender]
                got = [0, 0, 0, 0, 0]
                hours = set()
                for t, n, delivered, failed, rcpts in conn.execute(
                        sa.select(m.c.time, m.c.rcpt_count, m.c.delivered, m.c.failed,
                                  m.c.rcpts).where(m.c.sender_id == sid)):
                    # The counts kept beside the packed text agree with it.
                    assert (delivered, failed) == (
                        sum(r.status in DELIVERED for r in unpack(rcpts)),
                        sum(r.status in FAILED for r in unpack(rcpts)))
                    got[0] += 1
                    got[1] += n
                    got[2] += delivered
                    got[3] += failed
                    hours.add(int(t // HOUR))
                got[4] = len(hours)
                for row in conn.execute(sa.select(d).where(d.c.sender_id == sid)):
                    got = [a + b for a, b in zip(got, (row.messages, row.recipients,
                                                       row.delivered, row.failed,
                                                       row.hours.bit_count()), strict=True)]
                t = totals[sender]
                assert got == [t.messages, t.recipients, t.delivered, t.failed, t.hours]
            assert not conn.execute(sa.select(m.c.queue_id).where(
                m.c.time < detail_boundary(now, DETAIL_DAYS))).all()  # folded
            rcpts = [r for (text,) in conn.execute(sa.select(m.c.rcpts)) for r in unpack(text)]
            failures = [r for r in rcpts if r.status in FAILED]
            assert failures and all(r.reply.startswith("550 5.1.1") for r in failures)
            # The messages kept cover the counters' day: two hours of minutes are left.
            c = packed.t["counters"]
            assert conn.execute(sa.select(sa.func.min(c.c.bucket))).scalar() >= (
                now - MINUTES_KEPT - HOUR)
    finally:
        packed.close()
