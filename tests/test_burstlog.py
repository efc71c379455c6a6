"""One line when failures start, a reminder while they go on, one when it works again."""

from __future__ import annotations

import logging
import threading

import pytest

from extrusion.burstlog import BurstLog

LOG = logging.getLogger("extrusion.test.burstlog")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG.name]


def test_a_burst_is_three_lines_not_one_per_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    burst = BurstLog(LOG, "store sync", clock, repeat_seconds=60.0)
    for _ in range(100):
        burst.failed("OperationalError: database is locked")
        clock.now += 0.5  # 100 failures over 50 seconds: no reminder yet
    assert burst.failing
    clock.now += 20.0
    burst.failed("OperationalError: database is locked")  # 70 s in: the reminder
    burst.recovered()
    burst.recovered()  # said once
    assert messages(caplog) == [
        "store sync failed: OperationalError: database is locked",
        "store sync still failing (OperationalError: database is locked): "
        "101 failures in 70s",
        "store sync works again after 101 failures in 70.0s",
    ]
    assert not burst.failing


def test_the_note_and_level_say_what_happens_meanwhile(
        caplog: pytest.LogCaptureFixture) -> None:
    burst = BurstLog(LOG, "engine", Clock(), level=logging.ERROR,
                     note="; mail continues as on_error says")
    burst.failed("decide: no answer within 1s")
    (record,) = [r for r in caplog.records if r.name == LOG.name]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == ("engine failed: decide: no answer within 1s; "
                                   "mail continues as on_error says")


def test_threads_count_every_failure(caplog: pytest.LogCaptureFixture) -> None:
    """The milter reports from libmilter's threads: no failure is lost to a race."""
    caplog.set_level(logging.INFO)
    burst = BurstLog(LOG, "engine", Clock())

    def fail() -> None:
        for _ in range(1000):
            burst.failed("boom")

    threads = [threading.Thread(target=fail) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    burst.recovered()
    assert messages(caplog)[0] == "engine failed: boom"
    assert messages(caplog)[-1] == "engine works again after 4000 failures in 0.0s"
