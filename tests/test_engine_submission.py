"""Issue 13 with an injected clock: evidence at submission, probation, failures in proportion.

Each test is one sender's story on the engine and a real SQLite store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extrusion.scoring.baseline import Baseline
from extrusion.scoring.events import Action, Outcome, Stage, State, Status
from extrusion.scoring.share import ShareRule, failure_verdict
from tests.test_engine import UNKNOWN, Harness, config

BOT = "ip:198.51.100.7"
OWNER = "sasl:anna"
RULE = ShareRule(min_failures=8, share=0.4, floor=20, list_share=0.2)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(**sections: dict[str, Any]) -> Harness:
        h = Harness(config(tmp_path, **{"scoring": {"share_min_failures": 8}, **sections}))
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


def rcpt(h: Harness, sender: str, r: str, env_from: str, addr: str) -> Action:
    return h.engine.decide(sender, Stage.RCPT, 1, recipient=r, envelope_from=env_from,
                           client_addr=addr).action


# --- failures in proportion --------------------------------------------------------------


def test_a_mail_merge_mailshot_with_12_percent_dead_stays_ok() -> None:
    assert failure_verdict(48, 400, RULE).trigger is False  # more than 20, but 12 %
    assert failure_verdict(48, 400, RULE).above_lists is False


def test_a_bot_at_40_percent_is_caught_within_a_few_dozen() -> None:
    assert failure_verdict(8, 20, RULE).trigger is True
    assert failure_verdict(7, 10, RULE).trigger is False  # too few to say
    assert failure_verdict(21, 80, RULE).rule == "floor"  # 26 %: the talk's floor


def test_mailshot_through_the_engine_stays_ok(make: Callable[..., Harness]) -> None:
    h = make()
    shop = "sasl:shop"
    for i in range(300):
        h.clock.t += 2
        r = f"customer{i}@example.com"
        q = h.send(shop, [r], env_from="news@shop.example")
        h.result(q, r, Status.BOUNCED if i % 10 == 0 else Status.SENT,
                 UNKNOWN.format(r=r) if i % 10 == 0 else "250 ok")
    assert h.state(shop) is State.OK  # 30 failed of 300: more than 20, 10 %


# --- submission-time evidence ------------------------------------------------------------


def test_a_mail_clients_habits_shown_all_day_never_throttle_it(
        make: Callable[..., Harness]) -> None:
    """A home PC says HELO DESKTOP-… and sends from its owner's freemail address on port
    25, every quarter of an hour all day, every recipient delivered: one piece of evidence
    each, not one per submission window (that added up to a throttle)."""
    h = make()
    home = "ip:100.80.125.213"
    worst = State.OK
    for i in range(32):
        h.clock.t += 900
        r = f"friend{i % 7}@example.org"
        q = h.send(home, [r], env_from="anna.bob7@web.de", helos=("DESKTOP-AZAWIBK",),
                   client_addr="100.80.125.213")
        h.clock.t += 5
        h.result(q, r, Status.SENT, "250 ok")
        worst = max(worst, h.state(home), key=lambda s: s.rank)
    assert worst is State.WATCH  # probation at first, as for a bot's first message
    findings = h.engine._senders[home].findings
    assert findings["freemail_unauthenticated"]["count"] == 1


def test_unauthenticated_freemail_sender_is_put_on_probation(make: Callable[..., Harness]) -> None:
    h = make()
    assert rcpt(h, BOT, "a@example.org", "kwntefsqhi@usa.net", "198.51.100.7") is Action.CONTINUE
    assert h.state(BOT) is State.WATCH
    change = h.changes[-1]
    assert change.reason.startswith("probation: freemail sender without authentication")
    # The log's report of the same message adds nothing twice.
    h.send(BOT, ["a@example.org"], env_from="kwntefsqhi@usa.net", client_addr="198.51.100.7")
    assert h.engine.decide(BOT, Stage.CONNECT, count=False).score == pytest.approx(
        h.cfg.weights.freemail_unauthenticated, rel=1e-3)


def test_on_an_mx_freemail_mail_from_the_providers_servers_shows_nothing(
    make: Callable[..., Harness],
) -> None:
    """No one authenticates to an MX: gmail.com mail from Google's servers is normal."""
    h = make(general={"mode": "mx"})
    assert rcpt(h, BOT, "a@example.org", "anna@gmail.com", "209.85.128.7") is Action.CONTINUE
    assert h.state(BOT) is State.OK and h.changes == []


def test_an_authenticated_freemail_sender_shows_nothing(make: Callable[..., Harness]) -> None:
    h = make()
    assert rcpt(h, OWNER, "a@example.org", "anna@gmail.com", "198.51.100.7") is Action.CONTINUE
    assert h.state(OWNER) is State.OK and h.changes == []


def test_unauthenticated_mail_beside_the_owners_sasl_mail(make: Callable[..., Harness]) -> None:
    h = make()
    h.send(OWNER, ["friend@example.org"], env_from="anna@isp.example",
           client_addr="198.51.100.7")
    h.clock.t += 60
    rcpt(h, BOT, "x@example.org", "sales@shop.example", "198.51.100.7")
    assert h.state(BOT) is State.WATCH
    findings = h.changes[-1].evidence["findings"]
    assert isinstance(findings, dict) and "unauthenticated_from_sasl_address" in findings
    assert h.state(OWNER) is State.OK  # the owner's own mail carries on


def test_many_envelope_domains_in_a_short_window(make: Callable[..., Harness]) -> None:
    h = make()
    for i in range(5):
        h.clock.t += 30
        h.send(BOT, [f"r{i}@example.org"], env_from=f"info@shop{i}.example")
    assert h.state(BOT) is State.WATCH
    findings = h.changes[-1].evidence["findings"]
    assert isinstance(findings, dict) and findings["envelope_domains"]["weight"] == 10.0


def test_a_consumers_first_message_flows(make: Callable[..., Harness]) -> None:
    h = make()
    home = "ip:203.0.113.9"
    for i in range(3):
        assert rcpt(h, home, f"friend{i}@example.org", "jo@isp.example", "203.0.113.9") \
            is Action.CONTINUE
    h.send(home, [f"friend{i}@example.org" for i in range(3)], env_from="jo@isp.example")
    assert h.state(home) is State.OK and h.changes == []


# --- probation ---------------------------------------------------------------------------


def bot_on_probation(h: Harness) -> list[Action]:
    return [rcpt(h, BOT, f"r{i}@example.org", "kwntefsqhi@usa.net", "198.51.100.7")
            for i in range(40)]


def test_probation_budget_defers_with_451(make: Callable[..., Harness]) -> None:
    h = make()
    actions = bot_on_probation(h)
    assert actions == [Action.CONTINUE] * 30 + [Action.TEMPFAIL] * 10
    d = h.engine.decide(BOT, Stage.RCPT, 1, recipient="more@example.org")
    assert d.smtp_code == 451 and d.enhanced_code == "4.7.1"
    assert "probation" in d.text and d.reason.startswith("probation: ")
    h.clock.t += 631  # a new window (and its last 30 s bucket): the retry goes through
    assert h.engine.decide(BOT, Stage.RCPT, 1, recipient="more@example.org").is_continue


def test_probation_ends_on_good_deliveries(make: Callable[..., Harness]) -> None:
    h = make()
    bot_on_probation(h)
    rcpts = [f"r{i}@example.org" for i in range(12)]
    q = h.send(BOT, rcpts, env_from="kwntefsqhi@usa.net")
    for r in rcpts:
        h.clock.t += 5
        h.result(q, r, Status.SENT, "250 ok")
    assert h.state(BOT) is State.OK
    assert h.changes[-1].reason == "probation ended: 10 recipients delivered, 0% failing"
    assert all(a is Action.CONTINUE for a in bot_on_probation(h))  # vouched for


def test_probation_escalates_on_the_first_failures(make: Callable[..., Harness]) -> None:
    h = make()
    bot_on_probation(h)
    rcpts = [f"r{i}@example.org" for i in range(5)]
    q = h.send(BOT, rcpts, env_from="kwntefsqhi@usa.net")
    for i, r in enumerate(rcpts):
        h.clock.t += 5
        h.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r)) if i % 2 == 0 else h.result(
            q, r, Status.SENT, "250 ok")
    assert h.state(BOT) is State.THROTTLED  # 3 of 5 failed
    findings = h.changes[-1].evidence["findings"]
    assert isinstance(findings, dict) and findings["too_many_failures"]["rule"] == "probation"


def test_probation_ends_by_itself_without_outcomes(make: Callable[..., Harness]) -> None:
    h = make(probation={"max_seconds": 1800.0})
    bot_on_probation(h)
    h.clock.t += 1801
    h.engine.flush()
    assert h.state(BOT) is State.OK
    assert h.changes[-1].reason.startswith("probation ended: no verdict")


def test_probation_can_be_switched_off(make: Callable[..., Harness]) -> None:
    h = make(probation={"enabled": False})
    assert all(a is Action.CONTINUE for a in bot_on_probation(h))
    assert h.state(BOT) is State.OK


# --- the baseline ------------------------------------------------------------------------


def test_baseline_departure_needs_history_and_more_than_a_new_alias() -> None:
    b = Baseline()
    t = 1_700_000_000.0
    for i in range(30):
        b.learn(t + i * 600, "mail.shop.example", "shop.example", None, 3)
    assert b.established(20) and b.typical_hour > 0
    ok = {"authenticated": None, "volume_factor": 5.0, "volume_min": 50}
    assert b.departures(domain="other.example", recipients_now=3, **ok) == []
    assert b.departures(domain="shop.example", recipients_now=400, **ok) == [
        f"400 recipients this hour, typically {b.typical_hour:.0f}"]


def test_baseline_is_bounded_and_survives_malformed_storage() -> None:
    b = Baseline()
    for i in range(100):
        b.learn(float(i), f"helo{i}.example", f"d{i}.example", True, 1)
    assert len(b.helos) <= 8 and len(b.domains) <= 8
    again = Baseline.from_json(b.to_json())
    assert again.messages == 100 and again.helos == b.helos
    junk = Baseline.from_json({"messages": "lots", "helos": {"x": -1}, "typical_hour": None})
    assert junk.messages == 0 and junk.helos == {}


# --- rejection daemons from the log alone ------------------------------------------------


def test_rejection_daemon_from_the_log_alone_is_misconfigured(
        make: Callable[..., Harness]) -> None:
    h = make()
    daemon = "ip:192.0.2.80"
    notices: list[Any] = []
    h.engine.add_notice_listener(notices.append)
    for i in range(30):
        h.clock.t += 60
        r = f"forged{i}@example.org"
        q = h.send(daemon, [r], env_from="postmaster@corp.example")  # no headers: a log
        h.engine.outcome(Outcome(h.clock.t, q, r, Status.BOUNCED, "5.1.1",
                                 UNKNOWN.format(r=r)))
    assert h.state(daemon) is State.OK
    assert [(n.sender, n.kind) for n in notices] == [(daemon, "misconfigured")]


def test_a_forged_postmaster_at_a_new_domain_each_time_is_no_excuse(
        make: Callable[..., Harness]) -> None:
    h = make()
    for i in range(10):
        h.clock.t += 10
        r = f"nobody{i}@example.org"
        q = h.send(BOT, [r], env_from=f"postmaster@forged{i}.example")
        h.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r))
    assert h.state(BOT) is State.THROTTLED
