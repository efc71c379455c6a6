"""Failing safe inside the milter: an engine that raises or hangs never holds up mail.

The engine behind is the real one; "raises" is injected through the test's
observer (it cannot be caused for real), "hangs" is the real engine's own
lock held by the test, as a stuck store write would hold it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import Milter
import pytest

from extrusion.milter.backlog import Backlog
from extrusion.milter.guard import EngineGuard
from extrusion.scoring.engine import open_engine
from extrusion.scoring.events import Connection, Headers, Submission

from .helpers import wait_for
from .test_milter import Ctx, Milters, Observed, engine, make_config, milters, send, stored

__all__ = ["engine", "milters"]  # fixtures shared with test_milter.py


class EngineDown(RuntimeError):
    pass


def _raise() -> None:
    raise EngineDown("store exploded")


def test_engine_errors_let_mail_through_log_once_and_keep_the_events(
    engine: Observed, milters: Milters, caplog: pytest.LogCaptureFixture
) -> None:
    engine.fail = _raise
    caplog.set_level("INFO", logger="extrusion.milter")
    for n in range(5):
        ctx = Ctx()  # five SMTP sessions of the same milter process
        assert set(send(ctx, queue_id=f"Q{n}")) == {Milter.CONTINUE}
        assert ctx._reply is None
        ctx._close()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "store exploded" in errors[0].getMessage()
    assert engine.connections == [] and engine.submissions == []
    guard = milters.guard
    assert guard is not None and len(guard.backlog) == 10  # nothing lost: all kept
    engine.fail = None
    assert guard.replay_backlog() == 10
    # Recorded under the address key the milter falls back to, in order.
    assert [m.queue_id for m in stored(engine, "ip:192.0.2.10")] == [f"Q{n}" for n in range(5)]
    assert any("engine works again after" in r.getMessage() for r in caplog.records)


def test_engine_errors_tempfail_when_configured(milters: Milters) -> None:
    engine = milters.start(on_error="tempfail")
    engine.fail = _raise
    ctx = Ctx()
    assert send(ctx)[-1] == Milter.TEMPFAIL
    assert ctx._reply == ("451", "4.3.0", "Temporary local problem, try again later")


def watch_until_stuck(guard: EngineGuard) -> None:
    """The watchdog's ticks until a call is past its deadline: however long a loaded
    machine takes to start the session thread, not a guessed sleep."""
    wait_for("a call past the engine deadline", lambda: guard.watch() or guard.stuck)


def test_hung_engine_holds_up_only_the_session_inside_it(milters: Milters) -> None:
    engine = milters.start(engine_timeout=0.2)
    guard = milters.guard
    assert guard is not None
    stuck = engine.engine._lock  # what an engine stuck on a lock would hold
    stuck.acquire()
    first_done = threading.Event()
    first: list[int] = []
    try:
        def first_session() -> None:  # already inside the engine when it hangs
            ctx = Ctx()
            first.extend(send(ctx, queue_id="QFIRST"))
            first_done.set()

        threading.Thread(target=first_session, daemon=True).start()
        watch_until_stuck(guard)  # the watchdog's ticks: that call is now past its deadline
        assert guard.stuck and not first_done.is_set()
        started = time.monotonic()
        ctx = Ctx()  # every later session is answered at once, mail flows
        assert set(send(ctx, queue_id="QLATER")) == {Milter.CONTINUE}
        assert time.monotonic() - started < 0.5
        assert ctx._reply is None
    finally:
        stuck.release()
    assert first_done.wait(5) and set(first) == {Milter.CONTINUE}
    assert not guard.stuck  # the slow call returned: the breaker closes
    assert guard.replay_backlog() == 2  # the later session's connection and submission
    assert {m.queue_id for m in stored(engine, "ip:192.0.2.10")} == {"QFIRST", "QLATER"}


def test_breaker_open_tempfails_when_configured(milters: Milters) -> None:
    engine = milters.start(engine_timeout=0.1, on_error="tempfail")
    guard = milters.guard
    assert guard is not None
    stuck = engine.engine._lock
    stuck.acquire()
    inside = threading.Thread(target=lambda: send(Ctx()), daemon=True)
    try:
        inside.start()
        watch_until_stuck(guard)
        ctx = Ctx()
        assert send(ctx)[-1] == Milter.TEMPFAIL
        assert ctx._reply == ("451", "4.3.0", "Temporary local problem, try again later")
    finally:
        stuck.release()
        inside.join(5)


def test_backlog_survives_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = tmp_path / "spool" / "milter-backlog.jsonl"
    now = time.time()
    events = [
        Connection(time=now, client_addr="192.0.2.1", helos=("a\\x00",), sasl_user="u"),
        Submission(time=now, sender="ip:192.0.2.1", queue_id="Q1", envelope_from="",
                   recipients=("a@example.org", "b@example.org"), size=10, mta="mta1.example",
                   headers=Headers(precedence="bulk", received_count=2)),
    ]
    broken = Observed(open_engine(config))
    broken.fail = _raise
    guard = EngineGuard(broken, timeout=1.0, backlog=Backlog(path))
    for event in events:
        guard.record(event)
    broken.fail = None
    guard.backlog.save()  # as at a stop while the engine still refused
    broken.engine.close()
    assert path.exists()

    backlog = Backlog(path)  # the next start
    assert backlog.load() == 2 and not path.exists()
    engine = Observed(open_engine(config))
    guard = EngineGuard(engine, timeout=1.0, backlog=backlog)
    assert guard.replay_backlog() == 2
    assert engine.connections == [events[0]] and engine.submissions == [events[1]]
    (msg,) = stored(engine, "ip:192.0.2.1")
    assert msg.queue_id == "Q1" and msg.null_sender
    guard.close()
    assert not path.exists()


def test_unreadable_backlog_lines_are_skipped_with_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text('{"type": "Connection", "time": 1.0, "client_addr": "192.0.2.1"}\n'
                    "not json\n"
                    '{"type": "Nonsense"}\n'
                    '{"type": "Submission", "time": 1.0}\n')
    backlog = Backlog(path)
    assert backlog.load() == 1
    assert sum("unreadable event skipped" in r.getMessage() for r in caplog.records) == 3


def test_full_backlog_drops_new_events_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    backlog = Backlog(None, max_events=2)
    for n in range(5):
        backlog.add(Connection(time=float(n), client_addr="192.0.2.1"))
    assert len(backlog) == 2 and backlog.dropped == 3
    assert sum("backlog full" in r.getMessage() for r in caplog.records) == 1


def test_a_refused_event_does_not_cost_the_decision_it_travels_with(
    milters: Milters, caplog: pytest.LogCaptureFixture
) -> None:
    engine = milters.start()
    real_connection = engine.engine.connection

    def broken_connection(event: Connection) -> None:
        raise EngineDown("connection table gone")

    engine.engine.connection = broken_connection  # type: ignore[method-assign]
    ctx = Ctx()
    assert send(ctx, sasl="blocked@example.net")[-1] == Milter.REJECT  # still enforced
    guard = milters.guard
    assert guard is not None and len(guard.backlog) == 1
    assert sum("connection table gone" in r.getMessage() for r in caplog.records) == 1
    engine.engine.connection = real_connection  # type: ignore[method-assign]
    assert guard.replay_backlog() == 1
    assert guard.backlog.peek() is None
