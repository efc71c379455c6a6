"""A replay into a throw-away store without a report makes no message, recipient,
counter or baseline rows (nobody would read them); the senders it stores and its
verdicts are the same as with them, and a report still finds every row."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from extrusion.config.load import load
from extrusion.replay.command import run
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import Outcome, Status, Submission
from extrusion_dev.generate import generate

from .helpers import Clock
from .test_engine_store import make_config

BOT = "ip:192.0.2.66"


def feed(engine: Engine, clock: Clock) -> None:
    for i in range(40):
        clock.t += 1.0
        qid, rcpt = f"AB{i:05d}", f"u{i}@example.org"
        engine.submission(Submission(clock.t, BOT, qid, "bot@example.net", (rcpt,)))
        engine.outcome(Outcome(clock.t, qid, rcpt, Status.BOUNCED, "5.1.1",
                               "550 5.1.1 user unknown"))
    engine.flush()


def senders(engine: Engine) -> list[tuple[Any, ...]]:
    return [(r.key, r.state, r.score, r.findings) for r in engine.store.senders()]


def test_without_rows_the_same_senders_and_no_message_rows(tmp_path: Path) -> None:
    kept = open_engine(make_config(f"sqlite:///{tmp_path / 'kept.db'}", tmp_path, "a"),
                       Clock())
    bare = open_engine(make_config(f"sqlite:///{tmp_path / 'bare.db'}", tmp_path, "b"),
                       Clock())
    bare.keeps_rows = False
    try:
        feed(kept, Clock())
        feed(bare, Clock())
        assert senders(bare) == senders(kept)
        assert senders(bare)[0][1] != "ok"  # the bot was judged all the same
        assert kept.store.message("AB00001", "a") is not None
        assert sum(kept.store.counters(BOT, "bounced").values()) == 40
        assert bare.store.message("AB00001", "b") is None
        assert bare.store.counters(BOT, "bounced") == {}
        assert BOT in kept.store.baselines(10) and bare.store.baselines(10) == {}
    finally:
        kept.close()
        bare.close()


def test_a_report_still_reads_every_message(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    with open(log, "w", encoding="utf-8") as f:
        truth = generate(f, seed=3, messages=600, senders=20, bots=1,
                         start=time.time() - 3 * 86400, duration=3600.0)
    config = tmp_path / "extrusion.toml"
    config.write_text('[general]\nlog_level = "warning"\n')
    cfg = load(config)
    found: list[int] = []

    def report(store: Any) -> None:  # what `--report` reads: the bot's outcomes
        found.append(sum(store.counters(truth.bots[0], "bounced").values()))

    with_report, _ = run(cfg, [str(log)], after=report)
    without, _ = run(cfg, [str(log)])
    assert found and found[0] > 0
    assert with_report.changes == without.changes
    assert with_report.senders == without.senders
    assert truth.bots[0] in without.senders
