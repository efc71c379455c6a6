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
from packedschema import DELIVERED, FAILED, Rcpt, pack, thin, unpack  # noqa: E402
from packedstore import THIN_DAYS, PackedStore, fill  # noqa: E402

from extrusion.scoring import batchwrite  # noqa: E402
from extrusion.scoring.retention import counter_boundary, detail_boundary  # noqa: E402
from extrusion.scoring.store import Store  # noqa: E402

SENDERS, MESSAGES, DAYS = 3, 6, 3
DETAIL_DAYS = 2.0  # a day folded, a day thinned, a day as written
HOUR = 3600

ROUND_TRIPS = [
    [Rcpt("a@example.org")],
    [Rcpt("a@example.org", "s", 1234, "2.0.0", "delivered", "250 2.0.0 Ok", "mx[192.0.2.1]:25")],
    [Rcpt("a@example.org", "s", 5, "", "delivered")],  # a delivery logged without a DSN
    [Rcpt("a@example.org", "s", 5, "2.6.0", "delivered")],
    [Rcpt("a@example.org", "b", 0, "5.1.1", "unknown_user", "550 5.1.1 no such user", "mx"),
     Rcpt("b@example.org", "d", 900_000, "4.2.0", "", "451 try later"),
     Rcpt("c@example.org")],
]


@pytest.mark.parametrize("rcpts", ROUND_TRIPS)
def test_a_packed_recipient_reads_back_as_written(rcpts: list[Rcpt]) -> None:
    assert unpack(pack(rcpts)) == rcpts


def test_thinning_keeps_a_failures_reply_and_drops_the_rest() -> None:
    rcpts = ROUND_TRIPS[1] + ROUND_TRIPS[4]
    thinned = unpack(thin(pack(rcpts)))
    assert [r.reply for r in thinned] == ["", "550 5.1.1 no such user", "451 try later", ""]
    assert all(r.relay == "" for r in thinned)
    assert [r[:5] for r in thinned] == [r[:5] for r in rcpts]


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
                    assert (row.time, row.envelope_from, row.helo, row.client_addr,
                            row.client_name, row.size, row.rcpt_count, row.message_id) == (
                        msg.time, msg.envelope_from, msg.helo, msg.client_addr,
                        msg.client_name, msg.size, msg.rcpt_count, msg.message_id)
                    got = {r.address: r for r in unpack(row.rcpts)}
                    assert set(got) == {r.recipient for r in msg.recipients}
                    for r in msg.recipients:
                        p = got[r.recipient]
                        assert (p.status, p.dsn, p.cls, p.reply, p.relay) == (
                            r.status[0], r.dsn, r.outcome_class, r.reply, r.relay)
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
            old = conn.execute(sa.select(m.c.message_id, m.c.rcpts)
                               .where(m.c.time < detail_boundary(now, DETAIL_DAYS))).all()
            assert not old  # folded
            thinned = [(mid, unpack(rc)) for mid, rc in conn.execute(
                sa.select(m.c.message_id, m.c.rcpts)
                .where(m.c.time < detail_boundary(now, THIN_DAYS)))]
            assert thinned
            assert all(mid == "" and all(r.relay == "" for r in rs) for mid, rs in thinned)
            failures = [r for _, rs in thinned for r in rs if r.status in FAILED]
            assert failures and all(r.reply.startswith("550 5.1.1") for r in failures)
            assert all(r.reply == "" for _, rs in thinned for r in rs if r.status in DELIVERED)
    finally:
        packed.close()
