"""The report read from a real store, SQLite and PostgreSQL: same scenario, same report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extrusion.report.jsonfmt import render_json
from extrusion.report.load import (
    Query,
    ReportError,
    load_report,
    notification_builder,
    report_for_senders,
)
from extrusion.report.model import Category, ReportOutcome
from extrusion.report.text import render_text
from extrusion.report.words import summary
from extrusion.scoring import judge
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.kinds import Kind
from extrusion.scoring.rows import Batch, SenderDelta
from extrusion.scoring.store import Store, state_change_row
from extrusion_dev.sample import at

from .test_report_render import golden

HL = 3600.0
BOT = "sasl:dsl-0047@example.net"
WORM = "ip:198.51.100.23"
DAEMON = "customer:acme"
QUIET = "ip:192.0.2.77"
RELEASED = "ip:192.0.2.99"
OLD = "ip:192.0.2.200"
UNTIL = at("2007-05-20 00:00:00")
SINCE = at("2007-05-19 00:00:00")
FAILURE = ("bounced", "5.1.1", "550 5.1.1 <{r}>: Recipient address rejected: User unknown")
SPAM = ("bounced", "5.7.1", "554 5.7.1 Message rejected as spam")
SENT = ("sent", "2.0.0", "250 2.0.0 Ok: queued as 4Xyz")
DEFERRED = ("deferred", "4.4.1", "connect to mx.slow.example[192.0.2.250]:25: Connection timed out")


class Scenario:
    """Writes messages, outcomes, findings and state changes the way the engine does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batch = Batch()
        self.n = 0

    def message(self, sender: str, t: str, envelope_from: str, size: int, helo: str,
                client: str, outcomes: list[tuple[str, tuple[str, str, str] | None]],
                **flags: Any) -> None:
        when = at(t)
        self.n += 1
        qid = f"Q{self.n:05d}"
        self.batch.messages.append({
            "time": when, "mta": "smarthost1", "queue_id": qid, "sender": sender,
            "envelope_from": envelope_from, "helo": helo, "client_addr": client,
            "size": size, "rcpt_count": len(outcomes), **flags,
        })
        for i, (rcpt, outcome) in enumerate(outcomes):
            self.batch.recipients.append({"time": when, "mta": "smarthost1", "queue_id": qid,
                                          "sender": sender, "recipient": rcpt,
                                          "status": "queued"})
            if outcome is not None:
                status, dsn, reply = outcome
                self.batch.recipients.append({
                    "time": when + 30 + i, "mta": "smarthost1", "queue_id": qid,
                    "sender": sender, "recipient": rcpt, "status": status, "dsn": dsn,
                    "reply": reply.format(r=rcpt), "outcome_class": "",
                })

    def sender(self, key: str, t: str, state: str, score: float, findings: dict[str, Any],
               first: str | None = None) -> None:
        self.batch.add_sender(SenderDelta(key, time=at(t), score_delta=score, state=state,
                                          findings=findings,
                                          first_seen=at(first) if first else None), HL)

    def change(self, key: str, t: str, old: State, new: State, score: float, reason: str,
               who: str = "engine") -> None:
        self.batch.state_changes.append(state_change_row(StateChange(
            time=at(t), sender=key, old=old, new=new, score=score, reason=reason, who=who,
            evidence={"score": score})))

    def write(self) -> None:
        self.store.write_batch(self.batch, HL)
        self.batch = Batch()


def finding(count: int, weight: float, examples: list[str], t: str, **extra: Any) -> dict[str, Any]:
    return {"count": count, "weight": weight, "examples": examples, "first": at(t),
            "last": at(t), **extra}


def write_scenario(store: Store) -> None:
    s = Scenario(store)
    fails = ["0930456496@yahoo.com", "09365874588@fdf.sdfads", "0939155631@yahoo.com.yw"]
    s.message(BOT, "2007-05-19 10:47:15", "vzjwcqk0n@msa.hinet.net", 2199,
              "dsl-10-47.example.net", "192.0.2.10",
              [(r, FAILURE) for r in fails]
              + [("0931244221@fetnet.net", SENT), ("0932132625@pchome.com.tw", SENT)])
    s.message(BOT, "2007-05-19 10:50:22", "985eubg@msa.hinet.net", 2206,
              "dsl-10-47.example.net", "192.0.2.10",
              [("cy-i88222@ms.cy.edw.tw", FAILURE), ("cynthia0421@1111.com.tw", SPAM)]
              + [(f"cy{i:02d}@hotmail.com", SENT) for i in range(35)])
    s.message(BOT, "2007-05-19 11:02:40", "q8zz1@msa.hinet.net", 2231,
              "dsl-10-47.example.net", "192.0.2.10",
              [(f"user{i}@invented{i}.example", FAILURE) for i in range(16)]
              + [("amy@example.org", SENT), ("cy@slow.example", DEFERRED),
                 ("late@slow.example", None)])
    s.sender(BOT, "2007-05-19 11:03:10", "held", 57.5, {
        "failed_recipients": finding(21, 21.0, fails, "2007-05-19 10:47:45"),
        "too_many_failures": finding(1, 16.5, [], "2007-05-19 11:03:00",
                                     failed_recipients=21, trigger=20),
        "spam_rejections": finding(1, 1.5, ["cynthia0421@1111.com.tw"], "2007-05-19 10:50:53"),
        "mailing_lists": finding(2, 10.0, ["985eubg@msa.hinet.net"], "2007-05-19 10:51:00",
                                 lists=2),
    }, first="2007-05-19 10:47:15")
    s.change(BOT, "2007-05-19 10:51:00", State.OK, State.WATCH, 12.0,
             "mailing_lists: 2 different lists")
    s.change(BOT, "2007-05-19 11:03:00", State.WATCH, State.HELD, 57.5,
             "too_many_failures: 21 distinct recipients failed")
    worm = [("lrhnow.usa.net", "23:11:22", "kwntefsqhi@usa.net", 8339, "ken@example1.demon.co.uk"),
            ("lkrw.hotmail.com", "23:11:24", "zmjkuzzs@hotmail.com", 11340,
             "ken@example2.demon.co.uk"),
            ("pshw.netscape.net", "23:14:52", "dscceljzmy@netscape.net", 6122,
             "steve.xf@example3.demon.co.uk")]
    for helo, t, env, size, rcpt in worm:
        s.message(WORM, f"2007-05-19 {t}", env, size, helo, "198.51.100.23", [(rcpt, SENT)])
    s.sender(WORM, "2007-05-19 23:14:53", "throttled", 30.0, {
        "helo_anomalies": finding(3, 30.0, ["lrhnow.usa.net (helo_sender_domain)"],
                                  "2007-05-19 23:11:22"),
    }, first="2007-05-19 23:11:22")
    s.change(WORM, "2007-05-19 23:14:53", State.OK, State.THROTTLED, 30.0,
             "helo_anomalies: lrhnow.usa.net (helo_sender_domain)")
    for h in range(3):
        s.message(DAEMON, f"2007-05-19 1{h}:0{h}:00", "postmaster@acme.example", 1520,
                  "mail.acme.example", "203.0.113.5",
                  [(f"forged{h}@victim{h}.example", FAILURE)], auto_reply=True)
    s.sender(DAEMON, "2007-05-19 12:02:31", "watch", 0.0, {
        "misconfigured": finding(3, 0.0, ["forged0@victim0.example"], "2007-05-19 10:00:31",
                                 failed_auto_replies=3, rejection_daemon=True),
    }, first="2007-05-19 10:00:00")
    for h in range(9):
        s.message(QUIET, f"2007-05-19 {h + 8:02d}:15:00", "shop@quiet.example", 4000,
                  "mail.quiet.example", "192.0.2.77",
                  [(f"customer{h}@example.com", SENT), ("gone@example.com", FAILURE if h == 0
                                                          else SENT)])
    s.sender(QUIET, "2007-05-19 16:15:00", "ok", 1.0, {
        "failed_recipients": finding(1, 1.0, ["gone@example.com"], "2007-05-19 08:15:30")},
        first="2007-05-19 08:15:00")
    s.message(RELEASED, "2007-05-19 14:00:00", "news@released.example", 3000,
              "mail.released.example", "192.0.2.99", [("a@b.example", FAILURE)])
    s.sender(RELEASED, "2007-05-19 15:00:00", "ok", 0.0, {}, first="2007-05-19 14:00:00")
    s.change(RELEASED, "2007-05-19 14:30:00", State.OK, State.THROTTLED, 22.0,
             "too_many_failures: 21 distinct recipients failed")
    s.change(RELEASED, "2007-05-19 15:00:00", State.THROTTLED, State.OK, 0.0,
             "released: newsletter confirmed with the customer", who="alice")
    s.message(OLD, "2007-05-12 09:00:00", "x@old.example", 1000, "old.example",
              "192.0.2.200", [("y@z.example", FAILURE)])
    s.sender(OLD, "2007-05-12 09:00:00", "held", 45.0, {}, first="2007-05-12 09:00:00")
    s.write()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    write_scenario(s)
    yield s
    s.close()


def query(**kw: Any) -> Query:
    return Query(**{"until": UNTIL, "since": SINCE, "half_life": 1e9, **kw})


def test_text_report_from_the_store_matches_the_golden_file(store: Store) -> None:
    # The same golden file for SQLite and PostgreSQL: the backends agree to the byte.
    report = load_report(store, query(), source="test store", generated_at=UNTIL)
    actual = render_text(report)
    assert actual == golden("store.txt", actual)


def test_store_report_picks_the_right_senders(store: Store) -> None:
    report = load_report(store, query(), generated_at=UNTIL)
    # Held before throttled; the released one (ok now) because it was throttled in the window.
    assert [s.key for s in report.senders] == [BOT, WORM, RELEASED]
    assert [s.key for s in report.misconfigured] == [DAEMON]
    assert report.misconfigured[0].category is Category.MISCONFIGURED
    everything = load_report(store, query(since=None), generated_at=UNTIL)
    assert OLD in [s.key for s in everything.senders]  # held a week ago, outside the window


def test_final_outcome_per_recipient_and_counts_over_the_window(store: Store) -> None:
    (bot,) = load_report(store, query(sender=BOT), generated_at=UNTIL).senders
    assert bot.state is State.HELD and bot.score == pytest.approx(57.5, rel=1e-3)
    assert (bot.counts.messages, bot.counts.recipients) == (3, 61)
    assert (bot.counts.failed, bot.counts.delivered, bot.counts.pending) == (21, 38, 2)
    last = bot.messages[-1]
    by_address = {r.address: r for r in last.recipients}
    assert by_address["cy@slow.example"].delivery is ReportOutcome.PENDING
    assert by_address["cy@slow.example"].status == "deferred"
    assert by_address["late@slow.example"].status == "queued"
    assert by_address["user3@invented3.example"].dsn == "5.1.1"
    assert "User unknown" in by_address["user3@invented3.example"].reply
    assert sum(b.failed for b in bot.hourly) == 21
    assert [s.summary for s in bot.findings][:1] == [
        "21 deliveries to distinct recipients failed (e.g. 0930456496@yahoo.com, "
        "09365874588@fdf.sdfads, 0939155631@yahoo.com.yw)"
    ]
    assert bot.detected_at == at("2007-05-19 11:03:00")


def test_helo_is_suspect_as_the_engine_judges_it(store: Store) -> None:
    report = load_report(store, query(), generated_at=UNTIL)
    worm = next(s for s in report.senders if s.key == WORM)
    bot = next(s for s in report.senders if s.key == BOT)
    assert worm.category is Category.VIRUS
    assert [m.helo_suspect for m in worm.messages] == [True, True, True]
    assert not any(m.helo_suspect for m in bot.messages)


def test_listing_is_capped_but_counts_are_not(store: Store) -> None:
    (bot,) = load_report(store, query(sender=BOT, max_messages=1), generated_at=UNTIL).senders
    assert len(bot.messages) == 1 and bot.messages_omitted == 2
    assert bot.messages[0].envelope_from == "q8zz1@msa.hinet.net"  # the most recent
    assert bot.counts.messages == 3 and bot.counts.failed == 21


def test_filters_by_state_and_sender(store: Store) -> None:
    held = load_report(store, query(state=State.HELD), generated_at=UNTIL)
    assert [s.key for s in held.senders] == [BOT] and held.misconfigured == ()
    one = load_report(store, query(sender=QUIET), generated_at=UNTIL)
    # A one-sender page plots that sender's activity alone.
    assert [s.key for s in one.senders] == [QUIET]
    assert [(a.key, a.messages) for a in one.activity] == [(QUIET, 9)]
    with pytest.raises(ReportError, match=re.escape("no sender 'ip:203.0.113.250' in the store")):
        load_report(store, query(sender="ip:203.0.113.250"))


def test_activity_covers_every_sender_in_the_window(store: Store) -> None:
    report = load_report(store, query(), generated_at=UNTIL)
    act = {a.key: a for a in report.activity}
    assert set(act) == {BOT, WORM, DAEMON, QUIET, RELEASED}  # OLD is outside the window
    quiet = act[QUIET]
    assert (quiet.messages, quiet.recipients, quiet.failed) == (9, 18, 1)
    assert (quiet.hours_active, quiet.blocks_active) == (9, 3)  # 08:15..16:15
    assert quiet.category is None and quiet.state is State.OK
    assert act[BOT].category is Category.SPAM and act[WORM].category is Category.VIRUS
    assert act[BOT].spamminess == pytest.approx(21 / 61)


def test_json_from_the_store_is_the_same_on_both_backends(store: Store) -> None:
    doc = json.loads(render_json(load_report(store, query(), generated_at=UNTIL)))
    actual = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert actual == golden("store.json", actual)


def test_reports_for_named_senders_keep_the_order_asked(store: Store) -> None:
    report = report_for_senders(store, [WORM, "ip:203.0.113.250", BOT], query())
    assert [s.key for s in report.senders] == [WORM, BOT]
    build = notification_builder(store, half_life=HL, clock=lambda: UNTIL)
    notified = build([BOT])
    assert notified.senders[0].key == BOT and len(notified.senders[0].messages) == 3


def test_report_of_an_empty_store(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'empty.db'}") as empty:
        report = load_report(empty, query())
    assert report.senders == () and report.activity == ()
    assert "No flagged or misconfigured senders" in render_text(report)


def test_every_finding_the_engine_writes_reads_as_a_sentence() -> None:
    # The kinds the engine notes on failures, refusals and at the MX have sentences of
    # their own; the habits shown at submission (freemail, spread, probation) are named.
    named = {Kind.FREEMAIL_UNAUTHENTICATED, Kind.UNAUTHENTICATED_FROM_SASL_ADDRESS,
             Kind.ENVELOPE_DOMAINS, Kind.RECIPIENT_SPREAD, Kind.PROBATION}
    assert set(judge.FAILURE_KINDS.values()) < set(Kind) - named
    for kind in set(Kind) - named:
        text = summary(kind, {"count": 2, "examples": ["a@example.org"]})
        # The fallback repeats the kind's own name; every kind has a sentence of its own.
        assert not text.startswith(kind.replace("_", " ")), kind
    for kind in named:
        assert summary(kind, {"count": 2}) == f"{kind.replace('_', ' ')}: 2"
    assert summary(Kind.THROTTLED_REFUSALS, {"count": 80, "examples": ["v0@example.org"]}) == (
        "kept sending while throttled: 80 new recipients refused with 451 4.7.1 "
        "(e.g. v0@example.org)")
