"""benchmarks/cluster.py, shortened: three real `extrusion policyd` hosts on one
PostgreSQL, each following its own mail log, for a few seconds of mail. The hosts
agree on a bot, an operator's block and release reach all three, and every logged
recipient is in the store exactly once with its status."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import sqlalchemy as sa

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    # Last on the path: cluster.py imports its siblings by their names, and a sibling
    # named like an installed module (benchmarks/milter.py) must not shadow it.
    sys.path.append(str(BENCHMARKS))

import cluster  # noqa: E402
from hosts import HOSTS  # noqa: E402

RATE = 40.0  # messages a second over the three hosts, a quarter of them the bot's
SECONDS = 4.0
AGREE_WITHIN = 15.0  # refresh_seconds (3) and the log feeds' delays, with slack
ROWS_TIMEOUT = 30.0


async def scenario(url: str, hosts: list[cluster.Host], firsts: cluster.Firsts
                   ) -> tuple[dict[tuple[str, str, str], str], list[float]]:
    start = time.monotonic()
    _lat, logged = await cluster.drive(hosts, RATE, SECONDS, "TQ", firsts)
    # The bot keeps being probed until every host holds it (or the bound passes).
    while firsts.pending() and time.monotonic() - start < SECONDS + 3 * AGREE_WITHIN:
        await firsts.probe(hosts, start)
        await asyncio.sleep(cluster.PROBE_EVERY)
    try:
        return logged, await cluster.propagation(url, hosts, 2)
    finally:
        for h in hosts:  # the policy connections belong to this event loop
            if h.conn is not None:
                h.conn[1].close()
                await h.conn[1].wait_closed()
                h.conn = None


def rows_settled(url: str, logged: dict[tuple[str, str, str], str]
                 ) -> tuple[int, int, int]:
    deadline = time.monotonic() + ROWS_TIMEOUT
    while True:
        counts = cluster.compare(logged, cluster.store_rows(url, "TQ"))
        if counts == (0, 0, 0) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def test_three_hosts_agree_propagate_and_lose_no_row(pg_database: str,
                                                      tmp_path: Path) -> None:
    hosts = [cluster.Host(pg_database, tmp_path, h) for h in HOSTS]
    try:
        for h in hosts:
            h.ready()
        firsts = cluster.Firsts(1, len(hosts), "t")
        logged, propagation = asyncio.run(scenario(pg_database, hosts, firsts))
        lost_dup_mismatched = rows_settled(pg_database, logged)
    finally:
        for h in hosts:
            h.stop()
    assert len(logged) >= 20  # the premise: mail went through every host (fewer on a busy
    # machine: the drive waits for each answer)
    assert {mta for mta, _, _ in logged} == set(HOSTS)
    assert lost_dup_mismatched == (0, 0, 0)
    held = firsts.held[0]
    assert None not in held, f"not every host held the bot: {held}"
    assert max(held) - min(held) <= AGREE_WITHIN, held  # type: ignore[operator]
    assert len(propagation) == 4 and max(propagation) < 10.0, propagation
    eng = sa.create_engine(pg_database)
    try:
        with eng.connect() as c:
            mtas = c.execute(sa.text("SELECT DISTINCT n.name FROM messages m JOIN names n "
                                     "ON n.id = m.mta_id WHERE m.queue_id LIKE 'TQ%'")
                             ).scalars().all()
    finally:
        eng.dispose()
    assert set(mtas) == set(HOSTS)
