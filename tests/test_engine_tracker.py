"""The message tracker's index of possible list posts agrees with a walk over every message."""

from __future__ import annotations

from extrusion.scoring.tracker import CLOSED, MessageInfo, MessageTracker


def info(qid: str, t: float, *, candidate: bool, mta: str = "mx1") -> MessageInfo:
    return MessageInfo(mta=mta, queue_id=qid, sender="ip:192.0.2.1", time=t,
                       rcpt_count=30 if candidate else 1,
                       list_like=None if candidate else False)


def walk(tracker: MessageTracker, horizon: float) -> list[str]:
    """What undecided_before() must return: every message, in order, filtered."""
    return [m.queue_id for m in tracker._by_queue.values()
            if m.list_like is None and m.time < horizon]


def test_undecided_posts_in_submission_order_decided_ones_left_out() -> None:
    tr = MessageTracker()
    for n in range(10):
        tr.add(info(f"Q{n}", float(n), candidate=n % 3 != 0))
    assert [m.queue_id for m in tr.undecided_before(100.0)] == walk(tr, 100.0)
    assert [m.queue_id for m in tr.undecided_before(5.0)] == ["Q1", "Q2", "Q4"]
    tr.get("mx1", "Q2").list_like = True  # type: ignore[union-attr]
    tr.get("mx1", "Q4").list_like = False  # type: ignore[union-attr]
    assert [m.queue_id for m in tr.undecided_before(100.0)] == ["Q1", "Q5", "Q7", "Q8"]
    assert [m.queue_id for m in tr.undecided_before(100.0)] == walk(tr, 100.0)


def test_evicted_and_expired_posts_are_no_longer_offered() -> None:
    tr = MessageTracker(max_messages=4)
    evicted = [m.queue_id for n in range(6) for m in tr.add(info(f"Q{n}", float(n),
                                                                 candidate=True))]
    assert evicted == ["Q0", "Q1"]
    assert [m.queue_id for m in tr.undecided_before(100.0)] == ["Q2", "Q3", "Q4", "Q5"]
    assert [m.queue_id for m in tr.expire(4.0)] == ["Q2", "Q3"]
    assert [m.queue_id for m in tr.undecided_before(100.0)] == ["Q4", "Q5"]
    assert walk(tr, 100.0) == ["Q4", "Q5"]


def test_a_queue_id_recorded_again_keeps_its_first_place() -> None:
    tr = MessageTracker()
    tr.add(info("A", 1.0, candidate=False))
    tr.add(info("B", 2.0, candidate=True))
    tr.add(info("A", 3.0, candidate=True))  # same key: the dict keeps A first
    assert [m.queue_id for m in tr.undecided_before(100.0)] == walk(tr, 100.0) == ["A", "B"]
    tr.add(info("B", 4.0, candidate=False))
    assert [m.queue_id for m in tr.undecided_before(100.0)] == walk(tr, 100.0) == ["A"]
    assert tr.get("mx1", "A").time == 3.0  # type: ignore[union-attr]


def test_recipient_sets_made_on_first_use_keep_what_is_added() -> None:
    m = info("Q1", 1.0, candidate=True)
    m.attempted.add("a@example.org")
    m.failed.add("b@example.org")
    m.attempted.add("b@example.org")
    assert m.attempted == {"a@example.org", "b@example.org"}
    assert m.failed == {"b@example.org"}
    assert m.attempted is m.attempted



def test_a_decided_message_keeps_no_recipient_sets_a_pending_one_does() -> None:
    # Only a pending list verdict reads a message's attempted and failed recipients; the
    # judge leaves them unmade for the rest (most messages, most of a replay's memory).
    from extrusion.config import Config
    from extrusion.scoring.classify import OutcomeClass
    from extrusion.scoring.judge import Judge
    from extrusion.scoring.memory import SenderMemory
    from extrusion.scoring.settings import EngineSettings

    judge = Judge(EngineSettings.from_config(Config()))
    mem = SenderMemory("ip:192.0.2.1", 1.0, 3600.0)
    single, post = info("Q1", 1.0, candidate=False), info("Q2", 1.0, candidate=True)
    for m in (single, post):
        judge.attempted(mem, m, "a@example.org", 2.0)
        judge.failure(mem, m, "b@example.org", OutcomeClass.UNKNOWN_USER, 3.0, False)
    assert single._attempted is None and single._failed is None
    assert post.attempted == {"a@example.org", "b@example.org"}
    assert post.failed == {"b@example.org"}


def test_final_recipients_close_a_message_once_all_are_in() -> None:
    one, three = info("Q1", 1.0, candidate=False), info("Q3", 1.0, candidate=False)
    three.rcpt_count = 3
    assert one.open and three.open
    one.finished("a@example.org")
    assert not one.open and one._final is CLOSED  # no set made for a single recipient
    three.finished("a@example.org")
    three.finished("a@example.org")  # the same recipient twice counts once
    three.finished("b@example.org")
    assert three.open and three._final == {"a@example.org", "b@example.org"}
    three.finished("c@example.org")
    assert not three.open and three._final is CLOSED and not CLOSED
    three.finished("d@example.org")  # an alias's extra recipient: still closed
    assert not three.open and not CLOSED
