"""The engine with an injected clock: outbreak, decay, release, overrides, limits, lists.

Each test reads as one story of a sender; the store is a real SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extrusion.config import Config
from extrusion.scoring.decisions import SMTP_REJECT, SMTP_TEMPFAIL
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import (
    Action,
    Connection,
    Headers,
    OperatorAction,
    OperatorVerb,
    Outcome,
    Stage,
    State,
    StateChange,
    Status,
    Submission,
)
from extrusion.scoring.standing import MAX_UNPROVEN_LISTS
from extrusion.scoring.store import Store

from . import helpers
from .helpers import Clock

T0 = 1_700_000_000.0
HL = 3600.0
BOT = "ip:192.0.2.66"
UNKNOWN = "550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table"
VIRUS = "554 5.7.1 Message rejected: virus found (W32/Mydoom.A@mm)"


def config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    # These stories are told with the talk's count alone ("more than 20 failures");
    # failures in proportion have their own (test_engine_share.py, and below).
    count_only = {"scoring": {"share_min_failures": 1000}}
    return helpers.config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}",
                          **helpers.merge(count_only, sections))


class Harness:
    """An engine on a SQLite file, a clock, and the state changes its listener heard."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.clock = Clock()
        self.store = Store(cfg.store.url)
        self.engine = Engine(cfg, self.store, self.clock)
        self.changes: list[StateChange] = []
        self.engine.add_listener(self.changes.append)
        self.seq = 0

    def close(self) -> None:
        self.engine.close()
        self.store.close()

    def send(self, sender: str, rcpts: list[str], *, env_from: str = "user@example.net",
             headers: Headers | None = None, helos: tuple[str, ...] = (),
             client_addr: str = "") -> str:
        self.seq += 1
        qid = f"Q{self.seq:06X}"
        self.engine.submission(Submission(
            time=self.clock.t, sender=sender, queue_id=qid, envelope_from=env_from,
            recipients=tuple(rcpts), headers=headers or Headers(), helos=helos,
            client_addr=client_addr,
        ))
        return qid

    def result(self, qid: str, rcpt: str, status: Status, reply: str = "", dsn: str = "",
               sender: str = "") -> None:
        if not dsn and status in (Status.BOUNCED, Status.EXPIRED):
            dsn = "5.1.1"
        self.engine.outcome(Outcome(time=self.clock.t, queue_id=qid, recipient=rcpt,
                                    status=status, dsn=dsn, reply=reply, sender=sender))

    def fail(self, sender: str, n: int, start: int = 0, step: float = 10.0) -> None:
        """`n` single-recipient messages to invented addresses, each bouncing."""
        for i in range(start, start + n):
            self.clock.t += step
            r = f"nobody{i}@example.org"
            q = self.send(sender, [r])
            self.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r))

    def state(self, sender: str) -> State:
        return self.engine.decide(sender, Stage.CONNECT, count=False).state


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(**sections: dict[str, Any]) -> Harness:
        h = Harness(config(tmp_path, **sections))
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


# --- outbreak ------------------------------------------------------------------------------


def test_a_bot_whose_recipients_all_fail_is_throttled_by_its_8th_failure(
        make: Callable[..., Harness]) -> None:
    h = make(scoring={"share_min_failures": 8})
    # Failures in proportion (issue 13): 8 distinct failures that are at least 40% of
    # the recipients attempted throttle, long before the talk's "more than 20".
    h.fail(BOT, 7)
    assert h.state(BOT) is State.OK  # 7 failures, slightly decayed: below watch (10)
    h.fail(BOT, 1, start=7)
    assert h.state(BOT) is State.THROTTLED
    assert [(c.old, c.new) for c in h.changes] == [(State.OK, State.THROTTLED)]
    change = h.changes[-1]
    assert change.reason == "too many delivery failures" and change.who == "engine"
    assert change.evidence["failed_recipients"] == 8
    findings = change.evidence["findings"]
    assert isinstance(findings, dict)
    trigger = findings["too_many_failures"]
    assert trigger["rule"] == "share" and trigger["share"] == 1.0
    assert trigger["attempted_recipients"] == 8


def test_more_than_20_failures_stay_the_floor_above_a_lists_share(
        make: Callable[..., Harness]) -> None:
    h = make(scoring={"share_min_failures": 8})
    # 30% failing: below failure_share (40%), above what a list post may fail (20%).
    for i in range(70):
        h.clock.t += 10
        r = f"customer{i}@example.org"
        q = h.send(BOT, [r])
        if i % 10 < 3:
            h.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r))
        else:
            h.result(q, r, Status.SENT)
        if i == 61:
            assert h.state(BOT) is State.WATCH  # 20 failures: not "more than 20" yet
    assert h.state(BOT) is State.THROTTLED
    change = h.changes[-1]
    assert change.new is State.THROTTLED and change.evidence["failed_recipients"] == 21
    findings = change.evidence["findings"]
    assert isinstance(findings, dict) and findings["too_many_failures"]["rule"] == "floor"
    assert findings["too_many_failures"]["trigger"] == 20


def test_throttled_sender_is_rate_limited_with_451(h: Harness) -> None:
    h.fail(BOT, 21)
    limit = h.cfg.limits["throttled"].recipients_per_hour
    d = h.engine.decide(BOT, Stage.RCPT, limit)
    assert d.action is Action.CONTINUE  # a throttled sender still gets a small budget
    d = h.engine.decide(BOT, Stage.RCPT, 1)
    assert (d.action, d.smtp_code, d.enhanced_code) == (Action.TEMPFAIL, SMTP_TEMPFAIL, "4.7.1")
    assert "rate limited" in d.text and "too many delivery failures" in d.text
    assert "score" not in d.text and "score" in d.reason  # internals only for the operator


def _spend_throttled_budget(h: Harness) -> None:
    h.fail(BOT, 21)
    assert h.state(BOT) is State.THROTTLED
    limit = h.cfg.limits["throttled"].recipients_per_hour
    assert h.engine.decide(BOT, Stage.RCPT, limit).action is Action.CONTINUE


def _push(h: Harness, recipients: list[str]) -> list[Action]:
    """RCPT attempts, one every 2 s, as a client pushing against its throttle."""
    actions = []
    for r in recipients:
        h.clock.t += 2.0
        actions.append(h.engine.decide(BOT, Stage.RCPT, 1, recipient=r).action)
    return actions


def test_a_throttled_bot_pushing_new_recipients_is_held(h: Harness) -> None:
    _spend_throttled_budget(h)
    # Its trickle of delivered mail alone could never reach hold_score: the
    # refusals of new recipients are what holds it (0.25 each by default).
    actions = _push(h, [f"victim{i}@example.org" for i in range(200)])
    first_hold = actions.index(Action.HOLD)
    assert set(actions[:first_hold]) == {Action.TEMPFAIL}
    assert 60 <= first_hold <= 100  # from ~20 to 40 at 0.25 each, less a little decay
    assert set(actions[first_hold:]) == {Action.HOLD}
    held = h.changes[-1]
    assert (held.old, held.new) == (State.THROTTLED, State.HELD)
    findings = held.evidence["findings"]
    assert isinstance(findings, dict)
    assert findings["throttled_refusals"]["count"] == first_hold
    assert findings["throttled_refusals"]["examples"][0] == "victim0@example.org"
    # Held, it is no longer refused, so that evidence stops by itself.
    h.engine.flush()
    row = h.store.sender(BOT)
    assert row is not None and row.state == "held"
    assert row.findings["throttled_refusals"]["count"] == first_hold


def test_a_throttled_client_retrying_the_same_recipients_is_not_held(h: Harness) -> None:
    _spend_throttled_budget(h)
    actions = _push(h, [f"friend{i % 3}@example.org" for i in range(300)])
    assert set(actions) == {Action.TEMPFAIL}
    assert h.state(BOT) is State.THROTTLED
    score = h.engine.decide(BOT, Stage.CONNECT, count=False).score
    assert score < 22.0  # three distinct recipients: 0.75 at most on top of the trigger


def test_refusals_count_only_for_a_throttled_sender(make: Callable[..., Harness]) -> None:
    # Over an ordinary class limit: volume alone never raises the score.
    h = make(limits={"default": {"recipients_per_hour": 5}})
    newsletter = "ip:192.0.2.80"
    actions = [h.engine.decide(newsletter, Stage.RCPT, 1, recipient=f"r{i}@example.org").action
               for i in range(100)]
    assert actions.count(Action.TEMPFAIL) == 95
    assert h.state(newsletter) is State.OK
    assert h.engine.decide(newsletter, Stage.CONNECT, count=False).score == 0.0


@pytest.mark.parametrize("sections", [
    {"weights": {"throttled_refusal": 0.0}},  # switched off
    {"general": {"monitor_only": True}},  # nothing is refused, so nothing counts
])
def test_no_refusal_evidence_when_off_or_monitoring(
    make: Callable[..., Harness], sections: dict[str, Any]
) -> None:
    h = make(**sections)
    h.fail(BOT, 21)
    assert h.state(BOT) is State.THROTTLED
    actions = _push(h, [f"victim{i}@example.org" for i in range(300)])
    assert Action.HOLD not in actions
    assert h.state(BOT) is State.THROTTLED
    assert "throttled_refusals" not in h.changes[-1].evidence["findings"]  # type: ignore[operator]


def test_repeated_failures_to_one_recipient_count_once(h: Harness) -> None:
    for _ in range(30):
        h.clock.t += 10
        q = h.send(BOT, ["same@example.org"])
        h.result(q, "same@example.org", Status.BOUNCED, UNKNOWN.format(r="same@example.org"))
    assert h.state(BOT) is State.OK


def test_virus_rejections_and_helo_anomaly_hold_a_worm(h: Harness) -> None:
    worm = "ip:198.51.100.23"
    h.engine.connection(Connection(time=h.clock.t, client_addr="198.51.100.23",
                                   helos=("lrhnow.usa.net",)))
    for i in range(7):
        h.clock.t += 5
        r = f"friend{i}@example.com"
        q = h.send(worm, [r], env_from="victim@usa.net", helos=("lrhnow.usa.net",))
        h.result(q, r, Status.BOUNCED, VIRUS, dsn="5.7.1")
    assert h.state(worm) is State.HELD
    d = h.engine.decide(worm, Stage.RCPT)
    assert d.action is Action.HOLD and "held for review" in d.text
    assert "helo_anomalies" in h.changes[-1].evidence["findings"]  # type: ignore[operator]


# --- decay and hysteresis ------------------------------------------------------------------


def test_state_falls_back_only_as_the_evidence_decays(h: Harness) -> None:
    h.fail(BOT, 21, step=1.0)
    assert h.state(BOT) is State.THROTTLED
    h.clock.t += HL * 0.9  # score ~ 11: below the throttle line (20) but above 20 * 0.5
    assert h.state(BOT) is State.THROTTLED
    h.clock.t += HL * 0.25  # score ~ 9.4: below 10
    assert h.state(BOT) is State.WATCH
    h.clock.t += HL * 1.5  # ~ 3.3: below watch * 0.5
    assert h.state(BOT) is State.OK
    assert [c.new for c in h.changes][-2:] == [State.WATCH, State.OK]
    assert h.changes[-1].reason == "evidence decayed"


def test_decay_also_happens_without_traffic_at_flush(h: Harness) -> None:
    h.fail(BOT, 21, step=1.0)
    h.clock.t += HL * 10
    h.engine.flush()
    assert h.changes[-1].new is State.OK
    stored = h.store.sender(BOT)
    assert stored is not None and stored.state == "ok"


# --- operator actions ----------------------------------------------------------------------


def test_release_forgets_the_evidence_and_is_audited(h: Harness) -> None:
    h.fail(BOT, 21)
    change = h.engine.operator(OperatorAction(h.clock.t, BOT, OperatorVerb.RELEASE, "kim",
                                              "customer cleaned the PC, ticket 4411"))
    assert change is not None and (change.old, change.new, change.who) == (
        State.THROTTLED, State.OK, "kim")
    assert h.changes[-1] == change
    d = h.engine.decide(BOT, Stage.RCPT)
    assert d.is_continue and d.score == 0.0
    h.fail(BOT, 20, start=100)  # a fresh start: 20 new failures are not enough
    assert h.state(BOT) is State.WATCH
    h.engine.flush()
    trail = h.store.state_changes(BOT)
    released = [c for c in trail if c.who == "kim"]
    assert released and "ticket 4411" in released[0].reason


def test_block_pin_refuses_with_550_and_survives_decay(h: Harness) -> None:
    change = h.engine.operator(OperatorAction(h.clock.t, BOT, OperatorVerb.BLOCK, "kim", "spam"))
    assert change is not None and change.new is State.BLOCKED
    d = h.engine.decide(BOT, Stage.MAIL)
    assert (d.action, d.smtp_code, d.enhanced_code) == (Action.REJECT, SMTP_REJECT, "5.7.1")
    assert "spam" not in d.text  # the operator's note stays internal
    h.clock.t += HL * 100
    assert h.state(BOT) is State.BLOCKED
    h.engine.flush()
    stored = h.store.sender(BOT)
    assert stored is not None and (stored.pinned, stored.pinned_by) == ("block", "kim")
    assert [o.match for o in h.store.overrides()] == [BOT]


def test_allow_pin_lets_a_failing_sender_through(h: Harness) -> None:
    h.engine.operator(OperatorAction(h.clock.t, BOT, OperatorVerb.ALLOW, "kim", "newsletter"))
    h.fail(BOT, 60)
    d = h.engine.decide(BOT, Stage.RCPT)
    assert d.is_continue and d.state is State.OK and d.score > 40


def test_hold_pin_and_monitor_pin(h: Harness) -> None:
    h.engine.operator(OperatorAction(h.clock.t, BOT, OperatorVerb.HOLD, "kim", "check"))
    assert h.engine.decide(BOT, Stage.EOM).action is Action.HOLD
    h.engine.operator(OperatorAction(h.clock.t, BOT, OperatorVerb.MONITOR, "kim", "watch only"))
    h.fail(BOT, 45)
    d = h.engine.decide(BOT, Stage.RCPT)
    assert d.is_continue and d.state is State.HELD and d.reason.startswith("monitor only")


# --- config overrides and reload --------------------------------------------------------


def test_config_overrides_by_cidr_and_sasl_pattern(make: Callable[..., Harness]) -> None:
    h = make(overrides=[
        {"match": "203.0.113.0/24", "action": "block", "reason": "abuse desk 17"},
        {"match": "sasl:*@lists.example", "action": "allow"},
    ])
    ip = h.engine.sender_key(client_addr="203.0.113.9")
    assert h.engine.decide(ip, Stage.MAIL).action is Action.REJECT
    lister = h.engine.sender_key(client_addr="192.0.2.1", sasl_user="news@lists.example")
    h.fail(lister, 30)
    assert h.engine.decide(lister, Stage.RCPT).is_continue


def test_reload_applies_and_audits_override_changes(make: Callable[..., Harness]) -> None:
    h = make()
    h.fail(BOT, 5)
    assert h.state(BOT) is State.OK
    block = config(Path(h.cfg.store.spool_dir).parent,
                   overrides=[{"match": BOT, "action": "block", "reason": "ticket 9"}])
    h.engine.reload(block)
    assert h.state(BOT) is State.BLOCKED
    assert (h.changes[-1].who, h.changes[-1].reason) == ("config", "block by config: ticket 9")
    h.engine.reload(config(Path(h.cfg.store.spool_dir).parent))
    assert h.state(BOT) is State.OK
    h.engine.flush()
    assert [c.new for c in h.store.state_changes(BOT)] == [State.BLOCKED, State.OK]


def test_customer_mapping_and_limits_class(make: Callable[..., Harness]) -> None:
    h = make(customers=[{"name": "acme", "limits": "consumer", "networks": ["10.0.0.0/8"]}])
    key = h.engine.sender_key(client_addr="10.1.2.3")
    assert key == "customer:acme"
    assert h.engine.decide(key, Stage.RCPT, 300).is_continue
    d = h.engine.decide(key, Stage.RCPT, 1)
    assert d.action is Action.TEMPFAIL and "too many recipients per hour" in d.text
    assert "[consumer]" in d.reason


def test_limits_override_changes_the_class(make: Callable[..., Harness]) -> None:
    h = make(overrides=[{"match": BOT, "action": "limits", "limits": "throttled"}])
    assert h.engine.decide(BOT, Stage.RCPT, 20).is_continue
    assert h.engine.decide(BOT, Stage.RCPT, 1).action is Action.TEMPFAIL


def test_a_reload_brings_its_own_budget(make: Callable[..., Harness]) -> None:
    # decide() remembers each class's budget for the limits in force: the reloaded
    # limits answer the next request, the old ones are not remembered across it.
    h = make(limits={"default": {"messages_per_hour": 0, "recipients_per_hour": 3}})
    assert h.engine.decide(BOT, Stage.RCPT, 3).is_continue
    assert h.engine.decide(BOT, Stage.RCPT, 1).action is Action.TEMPFAIL
    h.engine.reload(config(Path(h.cfg.store.spool_dir).parent,
                           limits={"default": {"messages_per_hour": 0,
                                               "recipients_per_hour": 5}}))
    assert h.engine.decide(BOT, Stage.RCPT, 2).is_continue
    d = h.engine.decide(BOT, Stage.RCPT, 1)
    assert d.action is Action.TEMPFAIL and d.reason.endswith("recipients per hour: 5/5")


def test_message_budget_at_eom_and_mail(make: Callable[..., Harness]) -> None:
    h = make(limits={"default": {"messages_per_hour": 2, "recipients_per_hour": 0}})
    for _ in range(2):
        assert h.engine.decide(BOT, Stage.MAIL).is_continue
        assert h.engine.decide(BOT, Stage.EOM).is_continue
    assert h.engine.decide(BOT, Stage.MAIL).action is Action.TEMPFAIL
    assert h.engine.decide(BOT, Stage.EOM).action is Action.TEMPFAIL
    assert h.engine.decide(BOT, Stage.EOM, now=h.clock.t + 3700).is_continue


def test_monitor_only_enforces_nothing_but_records(make: Callable[..., Harness]) -> None:
    h = make(general={"monitor_only": True})
    h.fail(BOT, 45)
    d = h.engine.decide(BOT, Stage.RCPT)
    assert d.is_continue and d.state is State.HELD and "would hold" in d.reason
    h.engine.flush()
    assert h.store.state_changes(BOT)[-1].new is State.HELD


def test_reject_bad_helo_at_mail_when_configured(make: Callable[..., Harness]) -> None:
    h = make(milter={"reject_bad_helo": True})
    d = h.engine.decide("ip:198.51.100.23", Stage.MAIL, 0, helos=("lrhnow.usa.net",),
                        client_addr="198.51.100.23", envelope_from="victim@usa.net")
    assert d.action is Action.REJECT and "HELO" in d.text
    plain = make(milter={"reject_bad_helo": False})
    assert plain.engine.decide("ip:198.51.100.23", Stage.MAIL, 0, helos=("lrhnow.usa.net",),
                               client_addr="198.51.100.23",
                               envelope_from="victim@usa.net").is_continue


# --- what does not count -------------------------------------------------------------------


def test_bounces_with_null_sender_never_count(h: Harness) -> None:
    relay = "ip:192.0.2.25"
    for i in range(50):
        r = f"gone{i}@example.org"
        q = h.send(relay, [r], env_from="")
        h.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r))
    assert h.state(relay) is State.OK


def test_rejection_daemon_is_misconfigured_not_spam(h: Harness) -> None:
    daemon = "sasl:helpdesk@example.net"
    for i in range(30):
        r = f"forged{i}@example.org"
        q = h.send(daemon, [r], env_from="mailer-daemon@example.net",
                   headers=Headers(auto_submitted="auto-replied"))
        h.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r))
    assert h.state(daemon) is State.OK
    h.engine.flush()
    stored = h.store.sender(daemon)
    assert stored is not None and stored.findings["misconfigured"]["rejection_daemon"] is True


def test_deferrals_count_only_when_they_end_in_a_bounce(h: Harness) -> None:
    rcpts = [f"slow{i}@example.org" for i in range(30)]
    queue = [(h.send(BOT, [r]), r) for r in rcpts]
    for q, r in queue:
        h.result(q, r, Status.DEFERRED, "451 4.7.1 Greylisted", dsn="4.7.1")
    assert h.state(BOT) is State.OK
    for q, r in queue:
        h.result(q, r, Status.EXPIRED, "message expired: 550 5.1.1 user unknown", dsn="5.1.1")
    assert h.state(BOT) is State.THROTTLED


def test_mailing_list_failures_are_discounted(h: Harness) -> None:
    lister = "sasl:list@example.net"
    rcpts = [f"member{i}@example.com" for i in range(200)]
    for _ in range(3):  # three posts to one list: 10 % of the members fail each time
        q = h.send(lister, rcpts, env_from="list-bounces@example.net",
                   headers=Headers(list_id="<news.example.net>"))
        for i, r in enumerate(rcpts):
            status = Status.BOUNCED if i % 10 == 0 else Status.SENT
            h.result(q, r, status, UNKNOWN.format(r=r) if status is Status.BOUNCED else "250 ok")
    assert h.state(lister) is State.OK
    h.engine.flush()
    stored = h.store.sender(lister)
    assert stored is not None
    assert stored.findings["list_failures_discounted"]["discounted"] == 60
    assert stored.findings["mailing_lists"]["lists"] == 1


def test_a_sender_rotating_list_identities_raises_the_score(h: Harness) -> None:
    # Every post delivered, but a new list identity each time: one more than a list
    # server's handful of new lists (standing.MAX_UNPROVEN_LISTS) and every further list
    # weighs, the ones let pass before included (test_list_servers.py has the rest).
    sender = "sasl:spammer@example.net"
    names = [f"l{n}" for n in range(MAX_UNPROVEN_LISTS + 1)]
    for name in names:
        rcpts = [f"{name}.{i}@example.com" for i in range(20)]
        q = h.send(sender, rcpts, headers=Headers(list_id=f"<{name}.lists.example>"))
        for r in rcpts:
            h.result(q, r, Status.SENT, "250 ok")
    d = h.engine.decide(sender, Stage.CONNECT)
    assert d.score == pytest.approx((len(names) - 1) * h.cfg.weights.extra_mailing_list)
    assert d.state.rank >= State.THROTTLED.rank


def test_a_mailshot_that_mostly_fails_is_not_a_list(h: Harness) -> None:
    rcpts = [f"old{i}@example.com" for i in range(40)]
    q = h.send(BOT, rcpts)
    for i, r in enumerate(rcpts):
        if i % 5 < 2:
            h.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r))
        else:
            h.result(q, r, Status.SENT, "250 ok")
    d = h.engine.decide(BOT, Stage.CONNECT)
    assert d.state is State.WATCH and d.score == pytest.approx(16.0)  # 40 % failed: counted


# --- outcomes known only by queue id ------------------------------------------------------


def test_outcome_by_queue_id_from_another_process(make: Callable[..., Harness]) -> None:
    milter = make()
    feed = make()  # a second engine on the same store, like the policy daemon
    qids = []
    for i in range(25):
        r = f"x{i}@example.org"
        qids.append((milter.send(BOT, [r]), r))
    milter.engine.flush()
    for q, r in qids:
        feed.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r))  # no sender: only the queue id
    assert feed.state(BOT) is State.THROTTLED


def test_outcome_before_its_submission_is_flushed_is_retried(make: Callable[..., Harness]) -> None:
    milter = make()
    feed = make()
    q = milter.send(BOT, ["early@example.org"])
    feed.result(q, "early@example.org", Status.BOUNCED, UNKNOWN.format(r="early@example.org"))
    assert feed.engine.status()["unresolved_outcomes"] == 1
    milter.engine.flush()
    feed.engine.flush()  # retries the lookup, then writes the outcome
    assert feed.engine.status()["unresolved_outcomes"] == 0
    (msg,) = feed.store.messages(BOT)
    assert {r.status for r in msg.recipients} == {"bounced"}  # in the "queued" row's place


def test_unattributable_outcome_is_kept_after_the_retry_time(h: Harness) -> None:
    h.result("NEVERSEEN", "a@example.org", Status.BOUNCED, "550 5.1.1 no")
    h.clock.t += 400
    h.engine.flush()
    assert h.engine.status()["unresolved_outcomes"] == 0
    assert h.store.undelivered_queue_ids("") == []
    assert h.store.messages("")[0].recipients[0].status == "bounced"


def test_undelivered_queue_ids(h: Harness) -> None:
    q1 = h.send(BOT, ["a@example.org", "b@example.org"])
    q2 = h.send(BOT, ["c@example.org"])
    h.result(q1, "a@example.org", Status.SENT, "250 ok")
    h.result(q2, "c@example.org", Status.BOUNCED, UNKNOWN.format(r="c@example.org"))
    assert h.engine.undelivered_queue_ids(BOT) == [q1]
    assert h.store.undelivered_queue_ids(BOT, "mx1") == [q1]


def test_duplicate_submission_is_recorded_once(h: Harness) -> None:
    sub = Submission(h.clock.t, BOT, "DUP1", "a@example.net", ("x@example.org",))
    h.engine.submission(sub)
    h.engine.submission(sub)
    h.engine.flush()
    assert len(h.store.messages(BOT)) == 1


def test_a_failing_listener_does_not_stop_the_others(h: Harness) -> None:
    heard: list[StateChange] = []

    def broken(change: StateChange) -> None:
        raise RuntimeError("listener bug")

    h.engine.add_listener(broken)
    h.engine.add_listener(heard.append)
    h.fail(BOT, 21)
    assert [c.new for c in heard] == [State.WATCH, State.THROTTLED]


def test_unknown_operator_verb_is_refused(h: Harness) -> None:
    with pytest.raises(ValueError):
        h.engine.operator(OperatorAction(h.clock.t, BOT, "pardon", "kim", "x"))  # type: ignore[arg-type]


# --- mx mode -------------------------------------------------------------------------------


def test_mx_mode_counts_spam_verdicts_but_not_forwarded_ones(make: Callable[..., Harness]) -> None:
    h = make(general={"mode": "mx"})
    spammer, forwarder = "ip:203.0.113.5", "ip:203.0.113.6"
    for _ in range(6):
        # Nine Received headers are no evidence of forwarding (a bot writes them) ...
        h.send(spammer, ["me@example.net"], headers=Headers(x_spam_flag="YES", received_count=9))
        # ... a chain the milter found written by the client itself is
        # (scoring/forwarding.py; tests/test_forwarding.py).
        h.send(forwarder, ["me@example.net"],
               headers=Headers(x_spam_flag="YES", received_count=9, forwarded_from="o.example"))
    assert h.engine.decide(spammer, Stage.CONNECT).score == pytest.approx(
        6 * h.cfg.weights.spam_verdict)
    assert h.engine.decide(forwarder, Stage.CONNECT).score == 0.0


def test_mx_mode_counts_rcpt_rejections_and_own_ranges_from_outside(
    make: Callable[..., Harness],
) -> None:
    h = make(general={"mode": "mx", "own_networks": ["10.0.0.0/8"]})
    h.engine.connection(Connection(time=h.clock.t, client_addr="10.9.8.7", helos=("x.example",)))
    inside = h.engine.sender_key(client_addr="10.9.8.7")
    assert h.engine.decide(inside, Stage.CONNECT).score == pytest.approx(
        h.cfg.weights.own_network_inbound)
    for i in range(21):
        r = f"guess{i}@example.net"
        h.result(f"NOQ{i}", r, Status.REJECTED, "550 5.1.1 <x>: Recipient address rejected: "
                 "User unknown in local recipient table", sender=BOT)
    assert h.state(BOT) is State.THROTTLED


def test_smarthost_mode_ignores_its_own_rejections(h: Harness) -> None:
    for i in range(30):
        h.result(f"NOQ{i}", f"r{i}@example.org", Status.REJECTED,
                 "451 4.7.1 extrusion: rate limited", sender=BOT)
        h.result(f"NOQ{i}", f"r{i}@example.org", Status.REJECTED,
                 "550 5.7.1 extrusion: sending refused", sender=BOT)
    assert h.engine.decide(BOT, Stage.CONNECT).score == 0.0


# --- the write queue -----------------------------------------------------------------------


def test_a_large_queue_is_flushed_in_the_background(make: Callable[..., Harness]) -> None:
    h = make(store={"flush_batch": 50})
    for i in range(30):
        h.send(BOT, [f"a{i}@example.org"])  # two rows per message: 60 queued writes
    bg = h.engine._bg_flush
    assert bg is not None
    bg.join(timeout=10)
    assert len(h.store.messages(BOT)) >= 20  # written without anybody calling flush()
    h.engine.flush()
    assert len(h.store.messages(BOT)) == 30


def test_an_engine_whose_caller_flushes_never_flushes_by_the_queues_size(
    make: Callable[..., Harness],
) -> None:
    h = make(store={"flush_batch": 50})
    h.engine.flushes_when_full = False  # a replay flushes after fixed numbers of lines
    for i in range(30):
        h.send(BOT, [f"a{i}@example.org"])  # 60 queued writes, over the batch size
    assert h.engine._bg_flush is None
    assert h.store.messages(BOT) == []
    h.engine.flush()
    assert len(h.store.messages(BOT)) == 30
