"""The bounded memories that drop their oldest entry keep the same entries, in the same
order, as the plain dicts with `del d[next(iter(d))]` they replaced: each is driven by a
random sequence of inserts, re-inserts (moves to the end) and evictions next to a model
of the old code."""

from __future__ import annotations

import logging
import random

from extrusion.maillog.evidence import SESSION_SECONDS, ClientTracker
from extrusion.maillog.feed import LogFeed
from extrusion.maillog.joinstate import JoinSettings
from extrusion.policyd.clientlog import ClientWarnings
from extrusion.scoring.baseline import Baseline, Baselines
from tests.maillog_helpers import Recorder


def test_client_tracker_keeps_what_the_plain_dict_kept() -> None:
    rnd = random.Random(17)
    tracker = ClientTracker(max_clients=40)
    old: dict[str, float] = {}  # the old code: addr -> last seen
    evicted = 0
    t = 0.0
    for _ in range(5000):
        t += rnd.choice((0.1, 1.0, SESSION_SECONDS + 1))  # some sessions end
        addr = f"192.0.2.{rnd.randrange(120)}"
        tracker.session(t, addr, "helo.example", "a@b.example")
        last = old.pop(addr, None)
        if (last is None or t - last > SESSION_SECONDS) and len(old) >= 40:
            del old[next(iter(old))]
            evicted += 1
        old[addr] = t
        assert list(tracker._clients) == list(old)
    assert tracker.evicted == evicted > 0


def test_joiner_keeps_the_queue_ids_the_plain_dict_kept() -> None:
    rnd = random.Random(5)
    limit = 30
    feed = LogFeed(Recorder(), settings=JoinSettings(max_queue_ids=limit),
                   reference_time=1_780_000_000.0, guard=False)
    joiner = feed.joiner
    stamp = "Jun  1 12:00:00 mx1"  # one second of log time: nothing ages out
    old: dict[str, None] = {}  # the old code: least recently touched first
    used: list[str] = []
    evictions = 0
    for n in range(3000):
        op = rnd.random()
        if op < 0.4 or not used:
            q = f"{n:010X}"
            used.append(q)
            feed.line(f"{stamp} postfix/smtpd[1]: {q}: client=unknown[198.51.100.{n % 250}]")
        elif op < 0.85:  # touched again: moved to the end, or back after its eviction
            q = rnd.choice(used)
            feed.line(f"{stamp} postfix/smtp[2]: {q}: to=<x@far.example>, "
                      f"relay=mx.far.example[198.51.100.7]:25, delay=1, delays=0/0/0.5/0.5, "
                      f"dsn=4.7.1, status=deferred (450 4.7.1 later)")
        else:
            if not old:
                continue
            key = rnd.choice(list(old))
            feed.line(f"{stamp} postfix/qmgr[3]: {key.split()[1]}: removed")
            del old[key]
            assert list(joiner._msgs) == list(old)
            continue
        key = "mx1 " + q
        if key in old:
            del old[key]
        elif len(old) >= limit:
            del old[next(iter(old))]
            evictions += 1
        old[key] = None
        assert list(joiner._msgs) == list(old)
    assert joiner.stats.evicted == evictions > 0


def test_client_warnings_close_the_windows_the_plain_dict_closed() -> None:
    rnd = random.Random(3)
    now = [0.0]
    log = logging.getLogger("tests.bounded_memories")
    log.propagate = False
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    log.addHandler(handler)
    try:
        warnings = ClientWarnings(log, lambda: now[0], per_minute=2, max_clients=25)
        old: dict[str, list[float]] = {}  # the old code: client -> window, oldest first
        next_sweep = 0.0
        evicted = 0
        for _ in range(4000):
            now[0] += rnd.choice((0.01, 0.5, 7.0))
            client = f"c{rnd.randrange(60)}"
            warnings.warn(client, "x %s", client)
            if now[0] >= next_sweep:
                next_sweep = now[0] + 60
                for c, w in list(old.items()):
                    if now[0] - w[0] >= 60:
                        del old[c]
            window = old.get(client)
            if window is None or now[0] - window[0] >= 60:
                if window is not None:
                    del old[client]
                if len(old) >= 25:
                    del old[next(iter(old))]
                    evicted += 1
                window = old[client] = [now[0], 0, 0]
            window[1 if window[1] < 2 else 2] += 1
            assert list(warnings._windows.items()) == list(old.items())
        assert evicted > 0
        assert any("more warnings" in line for line in lines)
    finally:
        log.removeHandler(handler)


def test_baselines_keep_the_pending_forms_the_plain_dict_kept() -> None:
    rnd = random.Random(11)
    kept = Baselines(limit=20)
    old: dict[str, int] = {}  # the old code: key -> messages, oldest first
    for i in range(3000):
        key = f"k{rnd.randrange(70)}"
        kept.collect(key, Baseline(messages=i, dirty=True))
        old[key] = i
        while len(old) > 20:
            del old[next(iter(old))]
        if rnd.random() < 0.02:
            drained = kept.drain()
            assert [(k, d["messages"]) for k, d in drained.items()] == list(old.items())
            old = {}
    drained = kept.drain()
    assert [(k, d["messages"]) for k, d in drained.items()] == list(old.items())
