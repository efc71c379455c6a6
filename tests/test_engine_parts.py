"""The engine's parts (scoring/book.py, recording.py, outcomes.py, sync.py...)
hold no reference back to the engine, nor to one another in a cycle: an engine
let go of is freed at once, with the memory of all its senders, not at the
cyclic collector's next full pass (a process that reloads, or a test run that
opens many engines, would hold them until then)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from extrusion.scoring.engine import open_engine
from extrusion.scoring.events import Outcome, Stage, State, StateChange, Status, Submission

from . import helpers

T0 = 1_700_000_000.0
BOT = "ip:192.0.2.7"


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_dropped_engine_is_freed_without_the_cyclic_collector(
        tmp_path: Path, no_cyclic_gc: None) -> None:
    config = helpers.config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}",
                            store={"spool_dir": str(tmp_path / "spool")})
    engine = open_engine(config, lambda: T0)
    # Every part at work: events recorded, a state changed, a decision, a flush.
    for i in range(25):
        r = f"r{i}@example.org"
        engine.submission(Submission(T0, BOT, f"Q{i:05d}", "u@example.net", (r,)))
        engine.outcome(Outcome(T0, f"Q{i:05d}", r, Status.BOUNCED, "5.1.1",
                               "550 5.1.1 user unknown", sender=BOT))
    assert engine.decide(BOT, Stage.RCPT, 1, T0).state is not State.OK
    engine.close()
    # The book by count, not by weak reference: compiled (mypyc) objects take none.
    book_type = type(engine._book)
    books = sum(type(o) is book_type for o in gc.get_objects())
    ref = weakref.ref(engine)
    del engine
    assert ref() is None
    assert sum(type(o) is book_type for o in gc.get_objects()) == books - 1


def test_the_after_event_callback_outlives_its_engine_harmlessly(
        tmp_path: Path, no_cyclic_gc: None) -> None:
    # The parts' callback holds the book, not the engine: once the engine is gone an
    # event still recorded by a part hands out the book's queued state changes and
    # starts no flush, however full the batch.
    config = helpers.config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}",
                            store={"spool_dir": str(tmp_path / "spool"), "flush_batch": 1})
    engine = open_engine(config, lambda: T0)
    heard: list[str] = []
    engine.add_listener(lambda change: heard.append(change.sender))
    recorder, book = engine._recorder, engine._book
    engine.close()
    ref = weakref.ref(engine)
    del engine
    assert ref() is None
    book.changes.append(StateChange(T0, BOT, State.OK, State.WATCH, 5.0, "test"))
    recorder.submission(Submission(T0, BOT, "Q00001", "u@example.net", ("r@example.org",)))
    assert heard == [BOT]
    assert len(book.batch) >= 1  # nothing flushed it
