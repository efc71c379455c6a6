"""Outcomes whose message the engine never saw: live, another process may have recorded
it (ask the store); in a replay the log is the whole evidence (never ask, never wait)."""

from __future__ import annotations

import io
from pathlib import Path

from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import Outcome, Status, Submission

from .helpers import Clock
from .test_engine_store import make_config
from .test_policyd_support import make_config as daemon_config

BOT = "ip:192.0.2.66"


def bounce(clock: Clock, qid: str) -> Outcome:
    return Outcome(clock.t, qid, "x@example.org", Status.BOUNCED, "5.1.1",
                   "550 5.1.1 user unknown")


def test_memory_is_whole_never_asks_the_store_nor_waits(store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    milter = open_engine(make_config(store_url, tmp_path, "mx1"), clock)
    milter.submission(Submission(clock.t, BOT, "AAAAA00001", "bot@example.net",
                                 ("x@example.org",)))
    milter.submission(Submission(clock.t, BOT, "AAAAA00002", "bot@example.net",
                                 ("x@example.org",)))
    milter.flush()
    live: Engine = open_engine(make_config(store_url, tmp_path, "mx1"), clock)
    whole: Engine = open_engine(make_config(store_url, tmp_path, "mx1"), clock)
    whole.memory_is_whole = True
    try:
        clock.t += 5
        live.outcome(bounce(clock, "AAAAA00001"))  # found in the store: the bot's failure
        live.flush()
        assert sum(live.store.counters(BOT, "bounced").values()) == 1
        whole.outcome(bounce(clock, "AAAAA00002"))  # not in memory: nobody's, at once
        whole.outcome(bounce(clock, "ZZZZZ99999"))
        assert whole.status()["unresolved_outcomes"] == 0
        whole.flush()
        assert sum(whole.store.counters(BOT, "bounced").values()) == 1
    finally:
        for e in (milter, live, whole):
            e.close()


def test_replay_of_a_log_without_client_lines_records_every_outcome(tmp_path: Path) -> None:
    from extrusion.replay.command import replay

    log = tmp_path / "mail.log"
    with open(log, "w") as f:
        for i in range(50):
            f.write(f"Nov 30 04:00:{i:02d} mta1 postfix/smtp[9]: {0xABC00 + i:X}: "
                    f"to=<u{i}@example.net>, relay=mx.example.net[198.51.100.9]:25, delay=1, "
                    "delays=0/0/0/1, dsn=5.1.1, status=bounced (550 5.1.1 unknown)\n")
    out, err = io.StringIO(), io.StringIO()
    cfg = daemon_config(tmp_path, maillog={"timezone": "UTC"})
    assert replay(cfg, [str(log)], out=out, err=err, parallel=False) == 0, err.getvalue()
    assert "50 recipient outcomes (50 without a known sender)" in out.getvalue()
