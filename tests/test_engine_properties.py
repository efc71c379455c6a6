"""Property tests on the whole engine: whatever happens, scores stay non-negative and the
engine moves a sender only by the rules of the state machine (operators may pin anything)."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from extrusion.config import from_dict
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import (
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
from extrusion.scoring.state import Thresholds
from extrusion.scoring.store import Store

T0 = 1_700_000_000.0
SENDERS = ("ip:192.0.2.1", "sasl:bob", "ip:198.51.100.7")
REPLIES = {
    "unknown": ("5.1.1", "550 5.1.1 user unknown"),
    "spam": ("5.7.1", "550 5.7.1 rejected as spam"),
    "virus": ("5.7.1", "554 5.7.1 virus found in message"),
    "full": ("5.2.2", "552 5.2.2 mailbox full"),
}
TOLERANCE = 1e-3  # scores in the audit trail are rounded to 3 decimals

step = st.one_of(
    st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=3 * 3600.0)),
    st.tuples(st.just("submit"), st.sampled_from(SENDERS), st.integers(1, 15),
              st.booleans(), st.booleans()),
    st.tuples(st.just("outcome"), st.integers(0, 10_000),
              st.sampled_from([*REPLIES, "sent", "deferred", "expired"])),
    st.tuples(st.just("helo"), st.sampled_from(SENDERS),
              st.sampled_from(["PC", "mail.example.net", "lrhnow.usa.net", "[10.0.0.1]"])),
    st.tuples(st.just("operator"), st.sampled_from(SENDERS), st.sampled_from(list(OperatorVerb))),
    st.tuples(st.just("flush")),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, max_size=60))
def test_scores_never_negative_and_states_move_by_the_rules(
    steps: list[tuple[object, ...]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = from_dict({
            "general": {"hostname": "mx1"},
            "store": {"url": f"sqlite:///{tmp}/x.db", "spool_dir": f"{tmp}/spool"},
        })
        clock = [T0]
        store = Store(cfg.store.url)
        engine = Engine(cfg, store, lambda: clock[0])
        changes: list[StateChange] = []
        engine.add_listener(changes.append)
        sent: list[tuple[str, str, str]] = []  # (queue id, recipient, sender)
        try:
            for s in steps:
                _apply(engine, clock, sent, s)
                for sender in SENDERS:
                    assert engine.decide(sender, Stage.CONNECT, count=False).score >= 0.0
        finally:
            engine.close()
            store.close()
    # Steer the search towards runs that climb high (throttled, held) and come back.
    target(float(max((c.new.rank for c in changes if c.who == "engine"), default=0)))
    target(float(sum(c.new.rank < c.old.rank for c in changes)), label="falls")
    _check_rules(Thresholds.from_config(cfg.scoring), changes)


def _check_rules(t: Thresholds, changes: list[StateChange]) -> None:
    for c in changes:
        assert c.score >= 0.0
        if c.who != "engine":
            continue  # operators and config pins may set any state
        if c.reason.startswith("probation") and State.OK in (c.old, c.new) and (
                State.WATCH in (c.old, c.new)):
            continue  # probation is a watch of its own, entered and left on its own rules
        if c.new.rank > c.old.rank:
            rise = t.rise_at(c.new)
            assert rise is not None and c.score >= rise - TOLERANCE, c
        elif c.new.rank < c.old.rank:
            assert c.score < t.fall_below(c.old) + TOLERANCE, c
            assert c.new.rank == 0 or c.score >= t.fall_below(c.new) - TOLERANCE, c


def _apply(engine: Engine, clock: list[float], sent: list[tuple[str, str, str]],
           s: tuple[object, ...]) -> None:
    kind = s[0]
    now = clock[0]
    if kind == "advance":
        clock[0] += float(s[1])  # type: ignore[arg-type]
    elif kind == "submit":
        _, sender, n, null, auto = s
        qid = f"Q{len(sent):06d}"
        rcpts = tuple(f"r{len(sent)}-{i}@example.org" for i in range(int(n)))  # type: ignore[call-overload]
        engine.submission(Submission(
            time=now, sender=str(sender), queue_id=qid, envelope_from="" if null else "a@b.example",
            recipients=rcpts, headers=Headers(auto_submitted="auto-replied" if auto else ""),
        ))
        sent.extend((qid, r, str(sender)) for r in rcpts)
    elif kind == "outcome" and sent:
        qid, rcpt, _sender = sent[int(s[1]) % len(sent)]  # type: ignore[call-overload]
        what = str(s[2])
        if what == "sent":
            status, dsn, reply = Status.SENT, "2.0.0", "250 ok"
        elif what == "deferred":
            status, dsn, reply = Status.DEFERRED, "4.4.1", "451 try later"
        elif what == "expired":
            status, dsn, reply = Status.EXPIRED, "4.4.1", "message expired"
        else:
            status, (dsn, reply) = Status.BOUNCED, REPLIES[what]
        engine.outcome(Outcome(time=now, queue_id=qid, recipient=rcpt, status=status, dsn=dsn,
                               reply=reply))
    elif kind == "helo":
        addr = str(s[1]).split(":", 1)[1] if str(s[1]).startswith("ip:") else "192.0.2.200"
        engine.connection(Connection(time=now, client_addr=addr, helos=(str(s[2]),)))
    elif kind == "operator":
        engine.operator(OperatorAction(now, str(s[1]), OperatorVerb(s[2]), "kim", "test"))
    elif kind == "flush":
        engine.decide(SENDERS[0], Stage.RCPT, 1)  # decisions may move states too
        engine.flush()
