"""Two processes sharing one store: the milter and the policy daemon's log feed.

Both report the same message (the milter with HELO, headers and recipients, the
log feed from the Postfix log), both find things about the same sender, and a
message held on arrival is known only from its `hold:` line. Each "process" here
is an Engine with its own Store (its own connections) on the same database.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from extrusion.config import Config, from_dict
from extrusion.identity import local_names
from extrusion.maillog.feed import LogFeed, join_settings
from extrusion.report.load import Query, report_for_senders
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import Headers, Outcome, Status, Submission
from extrusion.scoring.kinds import Kind
from extrusion.scoring.merging import merge_findings
from extrusion.scoring.store import Store

from . import helpers
from .helpers import Clock
from .storeview import MESSAGES_0008, message_rows

T0 = 1_700_000_000.0
MTA = "smarthost.example.net"
BOT = "ip:192.0.2.66"
FAILED, HELO = Kind.FAILED_RECIPIENTS, Kind.HELO_ANOMALIES
RCPTS = ("a@example.org", "b@example.org", "c@example.org")


def make_config(url: str, tmp_path: Path, name: str, hostname: str = MTA) -> Config:
    return helpers.config(tmp_path, url, hostname=hostname,
                          store={"spool_dir": str(tmp_path / f"spool-{name}")})


def engine(url: str, tmp_path: Path, name: str, clock: Clock, hostname: str = MTA) -> Engine:
    cfg = make_config(url, tmp_path, name, hostname)
    return Engine(cfg, Store(url), clock, own_store=True)


def milter_submission(qid: str, t: float = T0, helo: str = "localhost") -> Submission:
    return Submission(
        time=t, sender=BOT, queue_id=qid, envelope_from="bot@x.example", recipients=RCPTS,
        size=2206, client_addr="192.0.2.66", client_name="bot.example", helos=(helo,),
        headers=Headers(auto_submitted="auto-replied"), message_id="<m1@x.example>",
    )


def feed_submission(qid: str, t: float = T0 + 1.0) -> Submission:
    # What the Postfix log says: no HELO, no headers, recipients as logged.
    return Submission(
        time=t, sender=BOT, queue_id=qid, envelope_from="bot@x.example",
        recipients=RCPTS[:2], size=2206, client_addr="192.0.2.66", client_name="unknown",
    )


# --- 1. one message, whichever process reports it first ----------------------------------------


@pytest.mark.parametrize("milter_first", [True, False])
def test_both_processes_report_one_message(store_url: str, tmp_path: Path,
                                           milter_first: bool) -> None:
    clock = Clock()
    milter, feed = engine(store_url, tmp_path, "m", clock), engine(store_url, tmp_path, "f", clock)
    try:
        order = [(milter, milter_submission("4ABC1")), (feed, feed_submission("4ABC1"))]
        for e, sub in order if milter_first else reversed(order):
            e.submission(sub)
            e.flush()
        rows = message_rows(store_url)
        assert len(rows) == 1, rows
        row = rows[0]
        # The richer report's fields survive, whichever came second.
        assert row["helo"] == "localhost"
        assert row["client_name"] == "bot.example"
        assert "message_id" not in row  # not kept since 0009 (no reader)
        assert row["rcpt_count"] == 3 and row["time"] == T0
        with Store(store_url) as s:
            msgs = s.messages(BOT)
            assert len(msgs) == 1
            assert {r.recipient for r in msgs[0].recipients} == set(RCPTS)
            report = report_for_senders(s, [BOT], Query(until=T0 + 3600, since=T0 - 60))
            # Counted once, and one "queued" row per recipient, whichever came first.
            assert sum(s.counters(BOT, "messages").values()) == 1.0
            assert sum(s.counters(BOT, "recipients").values()) == 3.0
            queued = sorted(r.recipient for r in msgs[0].recipients if r.status == "queued")
            assert queued == sorted(RCPTS)
        (sender,) = report.senders
        assert sender.counts.messages == 1 and sender.counts.recipients == 3
        assert len(sender.messages) == 1
        assert len(sender.messages[0].recipients) == 3
    finally:
        milter.close()
        feed.close()


def test_concurrent_writers_still_one_row_per_message(store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    n = 200
    engines = [engine(store_url, tmp_path, name, clock) for name in ("m", "f")]
    errors: list[BaseException] = []

    def run(e: Engine, make: Any) -> None:
        try:
            for i in range(n):
                e.submission(make(f"Q{i:05X}", T0 + i))
                if i % 20 == 19:
                    e.flush()
            e.flush()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(engines[0], milter_submission)),
               threading.Thread(target=run, args=(engines[1], feed_submission))]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        rows = message_rows(store_url)
        assert len(rows) == n
        assert all(r["helo"] == "localhost" and r["rcpt_count"] == 3 for r in rows)
    finally:
        for e in engines:
            e.close()


def test_a_reused_queue_id_is_a_new_message(store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    e = engine(store_url, tmp_path, "m", clock)
    try:
        e.submission(milter_submission("4ABC1"))
        e.flush()
    finally:
        e.close()
    later = engine(store_url, tmp_path, "f", clock)  # the first one's memory is gone
    try:
        later.submission(feed_submission("4ABC1", T0 + 30 * 86400))
        later.flush()
    finally:
        later.close()
    (row,) = message_rows(store_url)
    assert (row["time"], row["helo"], row["rcpt_count"]) == (T0 + 30 * 86400, "", 2)


def test_migration_merges_messages_stored_twice(store_url: str) -> None:
    store = Store(store_url, create=False)
    try:
        assert store.upgrade("0001") == "0001"
        base = {"mta": MTA, "queue_id": "4ABC1", "sender": BOT, "envelope_from": "b@x.example",
                "client_addr": "192.0.2.66", "size": 10, "message_id": "", "list_id": "",
                "null_sender": False, "list_like": False}
        engine = sa.create_engine(store_url)
        with engine.begin() as conn:  # rows as a release before 0002 could leave them
            conn.execute(MESSAGES_0008.insert(), [
                {**base, "time": T0, "helo": "localhost", "client_name": "bot.example",
                 "rcpt_count": 3, "auto_reply": True},
                {**base, "time": T0 + 1, "helo": "", "client_name": "unknown",
                 "rcpt_count": 2, "auto_reply": False},
                {**base, "queue_id": "4ABC2", "time": T0, "helo": "", "client_name": "",
                 "rcpt_count": 1, "auto_reply": False},
            ])
        engine.dispose()
        assert store.upgrade() == Store.head_revision()
    finally:
        store.close()
    rows = message_rows(store_url)
    assert [r["queue_id"] for r in rows] == ["4ABC1", "4ABC2"]
    first = rows[0]
    assert (first["time"], first["helo"], first["rcpt_count"], bool(first["auto_reply"])) == (
        T0, "localhost", 3, True)


# --- scoring counts a message's evidence once --------------------------------------------------


def test_a_process_without_outcomes_does_not_judge_list_posts(store_url: str,
                                                               tmp_path: Path) -> None:
    """The milter never sees outcomes: its list verdicts would double the feed's."""
    clock = Clock()
    milter = engine(store_url, tmp_path, "m", clock)
    try:
        for i in range(3):  # three "lists" with no outcome ever seen here
            rcpts = tuple(f"r{j}@example.org" for j in range(40))
            milter.submission(Submission(
                time=T0 + i, sender=BOT, queue_id=f"L{i}", envelope_from=f"list{i}@x.example",
                recipients=rcpts, client_addr="192.0.2.66"))
        clock.t = T0 + 10 * 86400
        milter.flush()
        milter.flush()
        row = milter.store.sender(BOT)
        assert row is not None
        assert "mailing_lists" not in row.findings
        assert row.score == 0.0
    finally:
        milter.close()


# --- 2. findings from both processes ----------------------------------------------------------


def test_findings_of_both_processes_show(store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    milter, feed = engine(store_url, tmp_path, "m", clock), engine(store_url, tmp_path, "f", clock)
    try:
        milter.submission(milter_submission("4ABC1", helo="gmail.com"))
        milter.flush()
        feed.submission(feed_submission("4ABC2"))
        for i in range(5):
            clock.t += 1
            feed.outcome(Outcome(time=clock.t, queue_id="4ABC2", recipient=f"x{i}@example.org",
                                 status=Status.BOUNCED, dsn="5.1.1", reply="550 5.1.1 unknown",
                                 mta=MTA))
        feed.flush()
        milter.submission(milter_submission("4ABC3", T0 + 20, helo="x"))  # the milter again
        milter.flush()
        row = feed.store.sender(BOT)
        assert row is not None
        assert HELO in row.findings and FAILED in row.findings, row.findings
        assert row.findings[FAILED]["count"] == 5
        assert row.findings[HELO]["count"] >= 2
        with Store(store_url) as s:
            report = report_for_senders(s, [BOT], Query(until=T0 + 3600, since=T0 - 60))
        kinds = {f.kind for f in report.senders[0].findings}
        assert {HELO, FAILED} <= kinds
    finally:
        milter.close()
        feed.close()


def test_merge_findings_rules() -> None:
    helo_v1 = {"count": 1, "weight": 1.0, "examples": [], "first": 1.0, "last": 1.0}
    helo_v2 = {**helo_v1, "count": 2, "last": 5.0}
    failed = {"count": 3, "weight": 3.0, "examples": [], "first": 2.0, "last": 3.0}
    # Different names: both kept.
    assert merge_findings({HELO: helo_v1}, {FAILED: failed}) == {HELO: helo_v1, FAILED: failed}
    # A stale copy (adopted from the store earlier) does not undo a fresher entry.
    assert merge_findings({HELO: helo_v2}, {HELO: helo_v1, FAILED: failed})[HELO] == helo_v2
    assert merge_findings({HELO: helo_v1}, {HELO: helo_v2})[HELO] == helo_v2
    # After a release, news from before it are dropped, later ones kept.
    released = {"released": {"by": "op", "time": 4.0}}
    assert merge_findings(released, {HELO: helo_v1, FAILED: failed}) == released
    assert merge_findings(released, {HELO: helo_v2}) == {**released, HELO: helo_v2}
    # The releasing process's own findings replace everything.
    assert merge_findings({HELO: helo_v2}, released, replace=True) == released
    # What a writer noted since its last write (all of it for a sender new to its memory,
    # or forgotten by the sender cap) adds to the stored entries.
    more = {"count": 2, "weight": 2.0, "examples": ["x@example.org"], "first": 6.0,
            "last": 7.0}
    added = merge_findings({FAILED: {**failed, "examples": ["a@example.org"]}},
                           {FAILED: more}, added={FAILED: [2, 2.0]})[FAILED]
    assert (added["count"], added["weight"], added["first"], added["last"]) == (5, 5.0, 2.0, 7.0)
    assert added["examples"] == ["a@example.org", "x@example.org"]
    assert merge_findings(released, {HELO: helo_v1},
                          added={HELO: [1, 1.0]}) == released  # still stale


# --- 3. held on arrival: recorded from the hold line --------------------------------------------


HOLD_LINES = [
    "Nov 14 22:13:20 smarthost postfix/smtpd[100]: 4HOLD1: client=bot.example[192.0.2.66]",
    "Nov 14 22:13:20 smarthost postfix/smtpd[100]: 4HOLD1: hold: RCPT from "
    "bot.example[192.0.2.66]: <a@example.org>: Recipient address triggers HOLD action; "
    "from=<bot@x.example> to=<a@example.org> proto=ESMTP helo=<localhost>",
    "Nov 14 22:13:21 smarthost postfix/cleanup[101]: 4HOLD2: milter-hold: END-OF-MESSAGE "
    "from unknown[192.0.2.66]: milter triggers HOLD action; from=<bot@x.example> "
    "to=<b@example.org> proto=ESMTP helo=<localhost>",
]


def test_held_message_is_recorded_and_survives_a_restart(store_url: str, tmp_path: Path) -> None:
    clock = Clock()
    e = engine(store_url, tmp_path, "f", clock)
    try:
        feed = LogFeed.from_config(e, make_config(store_url, tmp_path, "f"), reference_time=T0)
        for line in HOLD_LINES:
            feed.line(line)
        e.flush()
        assert feed.stats.garbled == 0
    finally:
        e.close()
    again = engine(store_url, tmp_path, "f2", clock)  # every process restarted
    try:
        assert again.undelivered_queue_ids(BOT) == ["4HOLD1", "4HOLD2"]
        with Store(store_url) as s:
            held = s.message("4HOLD1", MTA)
        assert held is not None
        assert (held.sender, held.envelope_from, held.client_addr, held.rcpt_count) == (
            BOT, "bot@x.example", "192.0.2.66", 1)
    finally:
        again.close()


# --- the milter and the feed name the MTA alike ---------------------------------------------


def test_feed_names_local_lines_as_the_milter_does(tmp_path: Path) -> None:
    import socket

    cfg = make_config("sqlite:///unused.db", tmp_path, "x", hostname="")
    settings = join_settings(cfg)
    assert settings.local_mta == socket.gethostname()  # what the milter and engine use
    assert socket.gethostname().partition(".")[0].lower() in local_names(cfg)

    seen: list[Submission] = []

    class Sink:
        def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
            return f"ip:{client_addr}"

        def submission(self, event: Submission) -> None:
            seen.append(event)

        def outcome(self, event: Outcome) -> None:
            pass

        def evidence(self, event: object) -> None:
            pass

    feed = LogFeed(Sink(), settings=settings, reference_time=T0)
    short = socket.gethostname().partition(".")[0]
    for i, host in enumerate((short, "elsewhere")):
        feed.line(HOLD_LINES[1].replace("smarthost", host).replace("4HOLD1", f"4AAA{i}"))
    assert [s.mta for s in seen] == [socket.gethostname(), "elsewhere"]


def test_mx_own_network_seen_by_both_processes_counts_once(store_url: str,
                                                           tmp_path: Path) -> None:
    clock = Clock()
    cfg = {"general": {"hostname": MTA, "mode": "mx", "own_networks": ["192.0.2.0/24"]}}

    def mx_config(name: str) -> Config:
        return from_dict({**cfg, "store": {"url": store_url,
                                           "spool_dir": str(tmp_path / f"spool-{name}")}})

    def mx_engine(name: str) -> Engine:
        return Engine(mx_config(name), Store(store_url), clock, own_store=True)

    milter, feed = mx_engine("m"), mx_engine("f")
    try:
        milter.submission(milter_submission("4MX1", helo="pc.example.net"))
        # The live log feed beside an enabled milter leaves the client to the milter.
        settings = join_settings(mx_config("f"), live=True)
        assert settings.client_evidence is False
        feed.submission(replace(feed_submission("4MX1"),
                                client_evidence=settings.client_evidence))
        milter.flush()
        feed.flush()
        with Store(store_url) as s:
            row = s.sender(BOT)
        assert row is not None
        assert row.score == pytest.approx(10.0, rel=1e-3)
        assert row.findings["own_network_inbound"]["count"] == 1
        # Without a milter (or replaying a log), the feed's report is the evidence.
        feed.submission(feed_submission("4MX2", t=T0 + 1.0))
        feed.flush()
        with Store(store_url) as s:
            row = s.sender(BOT)
        assert row is not None and row.score > 19.0
    finally:
        milter.close()
        feed.close()


def test_the_feed_counts_the_client_only_without_a_milter(tmp_path: Path) -> None:
    cfg = make_config("sqlite://", tmp_path, "x")
    assert join_settings(cfg, live=True).client_evidence is False  # milter enabled
    assert join_settings(cfg).client_evidence is True  # a replayed log: no milter beside it
    no_milter = from_dict({"milter": {"enabled": False}})
    assert join_settings(no_milter, live=True).client_evidence is True
