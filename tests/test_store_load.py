"""A start reads only the senders worth remembering: with 1 M senders in the store,
most of them `ok`, unpinned and quiet for weeks, reading every row cost a daemon
most of its start-up and hundreds of MB it never gave back (benchmarks/scale.py)."""

from __future__ import annotations

from pathlib import Path

from extrusion.config import from_dict
from extrusion.scoring.engine import Engine
from extrusion.scoring.rows import SenderRow
from extrusion.scoring.store import Store
from extrusion.scoring.sync import QUIET_HALF_LIVES

T0 = 1_700_000_000.0
HALF_LIFE = 3600.0  # [scoring] half_life_seconds
LONG_AGO = T0 - (QUIET_HALF_LIVES + 1) * HALF_LIFE
QUIET = "ip:198.51.100.1"  # a score of 1,000 once, long ago: nothing left of it
RECENT = "ip:198.51.100.2"
PINNED = "ip:198.51.100.3"
THROTTLED = "ip:198.51.100.4"


def put(store: Store, key: str, t: float, state: str = "ok", pinned: str | None = None,
        score: float = 1000.0) -> None:
    store.put_sender(SenderRow(key=key, state=state, score=score, score_time=t,
                               first_seen=t, last_seen=t, state_since=t, pinned=pinned))


def fill(url: str) -> None:
    with Store(url) as s:
        put(s, QUIET, LONG_AGO)
        put(s, RECENT, T0 - HALF_LIFE, score=3.0)
        put(s, PINNED, LONG_AGO, pinned="allow")
        put(s, THROTTLED, LONG_AGO, state="throttled")


def test_the_quiet_senders_stay_in_the_store(store_url: str) -> None:
    fill(store_url)
    with Store(store_url) as s:
        rows, _mark = s.changed_senders(None, quiet_before=T0 - QUIET_HALF_LIVES * HALF_LIFE)
        assert {r.key for r in rows} == {RECENT, PINNED, THROTTLED}
        everyone, _mark = s.changed_senders(None)
        assert len(everyone) == 4  # a refresh still sees every change


def test_an_engine_starts_with_the_same_senders_as_before(store_url: str,
                                                          tmp_path: Path) -> None:
    fill(store_url)
    cfg = from_dict({"store": {"url": store_url, "spool_dir": str(tmp_path / "spool")},
                     "scoring": {"half_life_seconds": HALF_LIFE}})
    engine = Engine(cfg, Store(store_url), lambda: T0, own_store=True)
    try:
        assert set(engine._senders) == {RECENT, PINNED, THROTTLED}
        # Nor does a refresh bring it in: it has not changed since.
        engine.refresh(T0)
        assert QUIET not in engine._senders
    finally:
        engine.close()
