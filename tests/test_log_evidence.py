"""What only the live engine saw, carried by the MTA's log, so a replay judges alike:
a suspect HELO (the policy server's INFO line) and recipients refused as rate limited."""

from __future__ import annotations

from pathlib import Path

from extrusion.maillog import postfix
from extrusion.maillog.evidence import MESSAGE_IDS_KEPT, EvidenceJoin
from extrusion.maillog.join import Joiner, JoinSettings
from extrusion.maillog.records import ClientSeen, FilterVerdict, HeloNoted, Queued, Rejected
from extrusion.scoring.events import ClientEvidence, Outcome, Refused, Stage, State, Submission
from tests.maillog_helpers import Recorder
from tests.test_engine import BOT, Harness, config

INFO_LINE = ("4F2A1B3C9D: info: END-OF-MESSAGE from unknown[192.0.2.9]: extrusion: suspicious "
             "HELO: helo_no_dot; from=<a@b.example> to=<c@d.example> proto=ESMTP helo=<JOHNS-PC>")
REFUSAL = Rejected(
    "", "reject", "RCPT", "unknown", "192.0.2.9", "450", "4.7.1",
    "<v@d.example>: Recipient address rejected: extrusion: rate limited (too many delivery "
    "failures), try again later", "v@d.example", "a@b.example", "x")


def test_the_parser_reads_extrusions_helo_note_and_nothing_else_of_info_lines() -> None:
    assert postfix.parse("smtpd", INFO_LINE) == (HeloNoted("4F2A1B3C9D", "JOHNS-PC"),)
    other = INFO_LINE.replace("extrusion: suspicious HELO: helo_no_dot", "an operator's note")
    assert postfix.parse("smtpd", other) == ()
    assert postfix.parse("smtpd", "NOQUEUE: " + INFO_LINE.split(": ", 1)[1]) == ()


class Sink:
    def __init__(self) -> None:
        self.submissions: list[Submission] = []
        self.outcomes: list[Outcome] = []
        self.refusals: list[Refused] = []
        self.evidence_seen: list[ClientEvidence] = []

    def submission(self, event: Submission) -> None:
        self.submissions.append(event)

    def outcome(self, event: Outcome) -> None:
        self.outcomes.append(event)

    def refused(self, event: Refused) -> None:
        self.refusals.append(event)

    def evidence(self, event: ClientEvidence) -> None:
        self.evidence_seen.append(event)


def _joiner(live: bool) -> tuple[Joiner, Sink]:
    sink = Sink()
    return Joiner(sink, lambda addr, user: f"ip:{addr}", JoinSettings(live=live)), sink


def test_the_noted_helo_reaches_the_submission() -> None:
    j, sink = _joiner(live=False)
    j.add(1.0, "mx", ClientSeen("4F2A1B3C9D", "unknown", "192.0.2.9"))
    j.add(1.0, "mx", HeloNoted("4F2A1B3C9D", "JOHNS-PC"))
    j.add(1.0, "mx", Queued("4F2A1B3C9D", "a@b.example", 300, 1))
    j.finish()
    assert [s.helos for s in sink.submissions] == [("JOHNS-PC",)]


def test_a_replay_reads_its_own_rate_limit_refusals_and_a_live_feed_leaves_them() -> None:
    replay, replayed = _joiner(live=False)
    replay.add(5.0, "mx", REFUSAL)
    assert replayed.refusals == [Refused(5.0, "ip:192.0.2.9", "v@d.example")]
    assert replayed.outcomes == []  # never a delivery failure
    live, fed = _joiner(live=True)
    live.add(5.0, "mx", REFUSAL)
    assert fed.refusals == [] and fed.outcomes == []
    # Other refusals of extrusion's (a held or blocked sender) are not this evidence.
    replay.add(6.0, "mx", Rejected("", "reject", "RCPT", "unknown", "192.0.2.9", "550",
                                   "5.7.1", "extrusion: sending refused (x)", "w@d.example"))
    assert len(replayed.refusals) == 1


def test_the_engine_counts_a_logged_refusal_only_against_a_throttled_sender(
    tmp_path: Path,
) -> None:
    h = Harness(config(tmp_path))
    try:
        h.engine.refused(Refused(h.clock(), BOT, "v0@example.org"))
        assert h.engine.decide(BOT, Stage.CONNECT, count=False).score == 0.0
        h.fail(BOT, 21)
        assert h.state(BOT) is State.THROTTLED
        before = h.engine.decide(BOT, Stage.CONNECT, count=False).score
        for i in range(3):
            h.engine.refused(Refused(h.clock(), BOT, f"v{i}@example.org"))
        h.engine.refused(Refused(h.clock(), BOT, "v0@example.org"))  # a retry counts once
        after = h.engine.decide(BOT, Stage.CONNECT, count=False).score
        assert after - before == 3 * h.cfg.weights.throttled_refusal
    finally:
        h.close()


def test_the_engine_names_a_sessions_helo_anomalies(tmp_path: Path) -> None:
    h = Harness(config(tmp_path))
    try:
        assert h.engine.helo_note(("JOHNS-PC",), "192.0.2.9") == "helo_no_dot"
        assert h.engine.helo_note(("mail.example.net",), "192.0.2.9") == ""
    finally:
        h.close()


def test_the_message_id_memory_keeps_the_newest_when_full() -> None:
    """Past MESSAGE_IDS_KEPT Message-IDs the oldest go, one per new one (a spam filter's
    verdict naming only the Message-ID joins the newest, not the forgotten)."""
    rec = Recorder()
    known = {f"Q{i:06d}" for i in range(MESSAGE_IDS_KEPT + 10)}
    join = EvidenceJoin(rec, lambda addr, user: f"ip:{addr}", "", True,
                        lambda host, qid: ("192.0.2.7", "", "", "a@b") if qid in known else None)
    for i in range(MESSAGE_IDS_KEPT + 10):
        join.remember_message_id("mx1", f"{i}@example", f"Q{i:06d}")
    for i in (0, 9, 10, MESSAGE_IDS_KEPT + 9):
        join.filter_verdict(1.0, "mx1", FilterVerdict("spamd", True, message_id=f"{i}@example",
                                                       envelope_from="a@b"))
    assert [e.queue_id for e in rec.evidence_seen] == ["Q000010", f"Q{MESSAGE_IDS_KEPT + 9:06d}"]
