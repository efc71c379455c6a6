"""Mailing lists under the shipped limits: limits protect, the evidence decides.

A list of a few thousand members posting several times an hour, with no
evidence against it, is never refused by conf/extrusion.toml; a sender the
evidence throttles, or a runaway far beyond the safety net, still is. Each
test runs the engine on the shipped config with an injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extrusion.config import Config, as_dict, from_dict, load
from extrusion.scoring.events import Action, Connection, Decision, Headers, Stage, State, Status

from .conftest import REPO
from .test_engine import BOT, UNKNOWN, Harness

SHIPPED = REPO / "conf" / "extrusion.toml"
LIST_HOST = "ip:192.0.2.25"
LIST_FROM = "members-bounces@lists.example.org"
LIST_HEADERS = Headers(list_id="Members <members.lists.example.org>",
                       list_unsubscribe="<mailto:members-leave@lists.example.org>")
DOMAINS = ("example.com", "example.net", "mail.example.org", "isp.example", "uni.example.edu")
# Postfix's smtpd_recipient_limit: a list manager splits a post into transactions of this many.
RECIPIENTS_PER_TRANSACTION = 1000


def shipped(tmp_path: Path, **sections: Any) -> Config:
    """conf/extrusion.toml as shipped, with the store in `tmp_path` and `sections` on top."""
    data = as_dict(load(SHIPPED))
    data["general"]["hostname"] = "mx1"
    data["store"].update(url=f"sqlite:///{tmp_path / 'x.db'}", spool_dir=str(tmp_path / "spool"))
    for name, values in sections.items():
        data[name] = {**data[name], **values} if isinstance(values, dict) else values
    return from_dict(data, SHIPPED)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(**sections: Any) -> Harness:
        h = Harness(shipped(tmp_path, **sections))
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


def members(n: int) -> list[str]:
    return [f"member{i}@{DOMAINS[i % len(DOMAINS)]}" for i in range(n)]


def post(h: Harness, sender: str, rcpts: list[str], *, failing_every: int = 10) -> list[Decision]:
    """One post as Postfix sees it, the answers to every question it asked the engine.

    Each transaction: MAIL, one RCPT per recipient, END-OF-MESSAGE, then its
    submission and, over the next minutes, one outcome per recipient: every
    `failing_every`-th recipient unknown, the rest delivered.
    """
    answers: list[Decision] = []
    for start in range(0, len(rcpts), RECIPIENTS_PER_TRANSACTION):
        batch = rcpts[start:start + RECIPIENTS_PER_TRANSACTION]
        answers.append(h.engine.decide(sender, Stage.MAIL))
        for r in batch:
            h.clock.t += 0.01
            answers.append(h.engine.decide(sender, Stage.RCPT, 1, recipient=r))
        answers.append(h.engine.decide(sender, Stage.EOM, len(batch)))
        qid = h.send(sender, batch, env_from=LIST_FROM, headers=LIST_HEADERS)
        for i, r in enumerate(batch):
            h.clock.t += 0.1
            if failing_every and i % failing_every == 0:
                h.result(qid, r, Status.BOUNCED, UNKNOWN.format(r=r))
            else:
                h.result(qid, r, Status.SENT)
    return answers


def refusals(answers: list[Decision]) -> list[str]:
    return [d.reason for d in answers if d.action is not Action.CONTINUE]


def score(h: Harness, sender: str) -> float:
    return h.engine.decide(sender, Stage.CONNECT, count=False).score


def test_a_2000_member_list_posting_three_times_an_hour_is_never_refused(
    make: Callable[..., Harness],
) -> None:
    h = make()
    start = h.clock.t
    everyone = members(2000)
    for n in range(3):
        h.clock.t = start + n * 20 * 60  # at :00, :20 and :40
        assert refusals(post(h, LIST_HOST, everyone)) == [], f"post {n + 1}"
        assert h.state(LIST_HOST) is State.OK
    assert h.clock.t - start < 3600
    assert score(h, LIST_HOST) == 0.0  # its 10% failures are a list's, discounted
    assert h.changes == []


def test_a_recognised_list_posts_past_a_tight_class(make: Callable[..., Harness]) -> None:
    # Home users get 300 recipients an hour; one of them runs a 250-member list.
    h = make(customers=[{"name": "home", "limits": "consumer", "networks": ["192.0.2.0/24"]}])
    home = h.engine.sender_key(client_addr="192.0.2.25")
    assert home == "customer:home"
    everyone = members(250)
    assert refusals(post(h, home, everyone)) == []
    # Its outcomes say list (90% delivered): the next posts get [limits.list].
    h.clock.t += 600
    assert refusals(post(h, home, everyone)) == []
    h.clock.t += 600
    assert refusals(post(h, home, everyone)) == []
    # A list-sized post that does not come out as a list (half of it failing) ends
    # the allowance at once: the consumer budget, long spent, applies again.
    h.clock.t += 60
    assert refusals(post(h, home, members(10), failing_every=2)) == []
    refused = refusals([h.engine.decide(home, Stage.RCPT, 1, recipient="x@example.com")])
    assert refused == ["rate limit [consumer] recipients per hour: 760/300"]
    assert h.state(home) is State.OK  # limits protect; five failures are no verdict


def test_an_override_pinning_the_limits_gets_no_list_allowance(
    make: Callable[..., Harness],
) -> None:
    h = make(overrides=[{"match": LIST_HOST, "action": "limits", "limits": "consumer",
                         "reason": "contract: 300 an hour"}])
    assert refusals(post(h, LIST_HOST, members(250))) == []
    h.clock.t += 600
    refused = refusals(post(h, LIST_HOST, members(250)))
    assert len(refused) == 200 and refused[0].startswith("rate limit [consumer] recipients")


def test_a_watched_list_gets_the_watch_budget(make: Callable[..., Harness]) -> None:
    h = make()
    assert refusals(post(h, LIST_HOST, members(2000))) == []
    # Evidence against it: a HELO without a dot, as mass-mailing worms say it.
    h.engine.connection(Connection(time=h.clock.t, client_addr="192.0.2.25", helos=("pc17",)))
    assert h.state(LIST_HOST) is State.WATCH
    h.clock.t += 600
    refused = refusals(post(h, LIST_HOST, members(2000)))
    # 2,000 recipients in the hour already: [limits.watch] allows no more.
    assert len(refused) == 2000
    assert refused[0] == "rate limit [default+watch] recipients per hour: 2000/2000"


def test_a_sender_throttled_by_evidence_gets_the_trickle(make: Callable[..., Harness]) -> None:
    h = make()
    h.fail(BOT, 21)  # 21 invented addresses bounce
    assert h.state(BOT) is State.THROTTLED
    answers = [h.engine.decide(BOT, Stage.RCPT, 1, recipient=f"new{i}@example.com")
               for i in range(25)]
    assert [d.action for d in answers] == [Action.CONTINUE] * 20 + [Action.TEMPFAIL] * 5
    assert "rate limit [throttled] recipients per hour: 20/20" in answers[20].reason


def test_a_list_throttled_by_evidence_loses_its_allowance(make: Callable[..., Harness]) -> None:
    h = make()
    assert refusals(post(h, LIST_HOST, members(2000))) == []
    # Then remote sites refuse its mail as a virus: being a list protects nothing. (A
    # count of bounces no longer does it here: 21 of 2,021 recipients failing is a
    # list's share, judged in proportion since issue 13.)
    for i in range(5):
        h.clock.t += 10
        r = f"victim{i}@example.org"
        q = h.send(LIST_HOST, [r], env_from="list-bounces@lists.example")
        h.result(q, r, Status.BOUNCED, "554 5.7.1 Message rejected: virus found")
    assert h.state(LIST_HOST) is State.THROTTLED
    d = h.engine.decide(LIST_HOST, Stage.RCPT, 1, recipient="new@example.com")
    assert d.action is Action.TEMPFAIL
    assert "rate limit [throttled] recipients per hour: 2000/20" in d.reason


def test_a_runaway_sender_is_stopped_by_the_safety_net(make: Callable[..., Harness]) -> None:
    # 50,000 recipients in an hour, in list-sized messages, and no outcome comes
    # back: nothing says list, so the [limits.default] safety net stops it.
    h = make()
    runaway = "ip:192.0.2.99"
    start = h.clock.t
    answers: list[Decision] = []
    for m in range(500):
        batch = [f"r{m}.{i}@example.com" for i in range(100)]
        for r in batch:
            h.clock.t += 0.07
            answers.append(h.engine.decide(runaway, Stage.RCPT, 1, recipient=r))
        h.send(runaway, batch, env_from="offers@cheap.example")
    assert h.clock.t - start < 3600
    limit = h.cfg.limits["default"].recipients_per_hour
    assert [d.action for d in answers] == (
        [Action.CONTINUE] * limit + [Action.TEMPFAIL] * (50_000 - limit))
    first = answers[limit]
    assert first.reason == f"rate limit [default] recipients per hour: {limit}/{limit}"
    assert "too many recipients per hour" in first.text
    assert h.state(runaway) is State.OK and score(h, runaway) == 0.0  # volume is no evidence


def test_a_list_sent_in_chunks_of_ten_stays_ok_though_some_chunks_fail_a_third(
        make: Callable[..., Harness]) -> None:
    """A list manager sends a 1,000-member post ten recipients a message; 9 % of the members
    are dead, so some chunks have three dead (30 %, no list post by itself). The post as a
    whole is a list's: those failures weigh nothing."""
    h = make()
    everyone = members(1000)
    # Every tenth chunk has three dead members, two chunks in three one more: 9 %.
    dead = {m for i, m in enumerate(everyone)
            if (i // 10 % 10 == 5 and i % 10 < 3) or (i // 10 % 3 and i % 10 == 5)}
    thirds = 0
    for c in range(0, len(everyone), 10):
        h.clock.t += 3
        chunk = everyone[c:c + 10]
        q = h.send(LIST_HOST, chunk, env_from=LIST_FROM)
        thirds += sum(r in dead for r in chunk) >= 3
        for r in chunk:
            h.clock.t += 0.1
            if r in dead:
                h.result(q, r, Status.BOUNCED, UNKNOWN.format(r=r))
            else:
                h.result(q, r, Status.SENT, "250 ok")
    assert thirds > 0 and len(dead) < 0.12 * len(everyone)
    assert h.state(LIST_HOST) is State.OK
    assert h.engine.decide(LIST_HOST, Stage.RCPT, count=False).score < 1.0


def test_a_list_sized_message_failing_like_spam_still_weighs(
        make: Callable[..., Harness]) -> None:
    h = make()
    rcpts = [f"old{i}@example.com" for i in range(20)]
    q = h.send(BOT, rcpts)
    for i, r in enumerate(rcpts):
        h.result(q, r, Status.BOUNCED if i % 2 else Status.SENT,
                 UNKNOWN.format(r=r) if i % 2 else "250 ok")
    assert h.engine.decide(BOT, Stage.RCPT, count=False).score >= 10.0
