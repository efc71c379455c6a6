"""Three hosts on one PostgreSQL store, each following its own log: restarting one
changes no counter (issue 20: a checkpoint keyed by the path alone was shared by
every host with the default `[maillog] path`, and a restart re-read a whole log)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from extrusion.config import Config, from_dict
from extrusion.maillog.recovery import CrashSafeFeed, checkpoint_name
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.store import Store
from extrusion_dev.generate import Client, LogWriter

from .conftest import _reset_postgres
from .storeview import message_rows, outcome_rows

HOSTS = ("mx1.test", "mx2.test", "mx3.test")
BOT = Client(key="ip:198.51.100.66", name="unknown", addr="198.51.100.66", sasl="",
             mail_from="win@bot.example", service="smtpd", helo="localhost")
UNFINISHED = 60  # the last lines, whose messages are not removed yet


def _config(tmp: Path, url: str, host: str, log: Path) -> Config:
    return from_dict({
        "general": {"hostname": host},
        "store": {"url": url, "spool_dir": str(tmp / f"spool-{host}")},
        "milter": {"enabled": False},
        "maillog": {"source": "file", "path": str(log), "start_at": "beginning"},
    })


def _write_log(path: Path, host: str, seed: int) -> None:
    """The bot's mail through this host, most of it bouncing."""
    w = LogWriter(seed, host.split(".")[0], rfc3339=True)
    r = random.Random(seed)
    t = time.time() - 600
    for _ in range(40):
        t += 0.5
        rcpts = [w.recipient() for _ in range(3)]
        w.message(t, BOT, rcpts, [r.choice(("unknown", "unknown", "sent")) for _ in rcpts])
    w.lines.sort()
    lines = [text for _t, _s, text in w.lines]
    # The last messages are not removed yet: still open, they hold the checkpoint back.
    tail = [x for x in lines[-UNFINISHED:] if not x.endswith(": removed")]
    path.write_text("".join(x + "\n" for x in lines[:-UNFINISHED] + tail))


def _snapshot(url: str) -> dict[str, Any]:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            counters = sorted(conn.execute(sa.text(
                "SELECT n.name, c.name, c.bucket, c.value FROM counters c "
                "JOIN names n ON n.id = c.sender_id")).all())
    finally:
        eng.dispose()
    return {
        "counters": counters,
        "recipients": outcome_rows(url),
        "messages": sorted((m["mta"], m["queue_id"], m["rcpt_count"])
                           for m in message_rows(url)),
    }


def _start(cfg: Config) -> tuple[Engine, CrashSafeFeed]:
    engine = open_engine(cfg)
    feed = CrashSafeFeed(engine, cfg, engine.store)
    feed.poll()
    engine.flush()
    return engine, feed


def test_restarting_one_of_three_hosts_changes_no_counter(pg_database: str,
                                                          tmp_path: Path) -> None:
    Store(pg_database).close()
    try:
        configs = []
        for i, host in enumerate(HOSTS):
            log = tmp_path / host / "mail.log"
            log.parent.mkdir()
            _write_log(log, host, seed=i + 1)
            configs.append(_config(tmp_path, pg_database, host, log))
        running = [_start(cfg) for cfg in configs]
        before = _snapshot(pg_database)
        assert any(name == "bounced" for _s, name, _b, _v in before["counters"])
        assert {m for m, _q, _n in before["messages"]} == set(HOSTS)

        engine, feed = running[1]
        feed.close()
        engine.close()
        running[1] = _start(configs[1])
        assert _snapshot(pg_database) == before
        # It did read lines again (messages still open held its checkpoint back), and
        # found what they had recorded.
        assert running[1][1].recovery.stats.outcomes_skipped > 0

        with Store(pg_database) as store:
            names = [checkpoint_name(cfg) for cfg in configs]
            assert all(store.get_checkpoint(n) is not None for n in names)
        assert [n.split(":")[0] for n in names] == list(HOSTS)
    finally:
        for engine, feed in running:
            feed.close()
            engine.close()
        _reset_postgres(pg_database)  # the session's database: leave it empty


def test_hosts_with_the_same_log_path_never_share_a_checkpoint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    same = Path("/var/log/mail.log")
    names = {checkpoint_name(_config(tmp_path, url, host, same)) for host in HOSTS}
    assert names == {f"{host}:/var/log/mail.log" for host in HOSTS}
