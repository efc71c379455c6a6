"""The detection benchmark's yardstick: the population generator and the scorer.

The generated log must hold every kind of customer, read cleanly through
extrusion's own parser and be the same for a seed; the scorer must count
escapes, minutes and the one-line rule exactly as benchmarks/detection.py
defines them.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from benchmarks.detection import (
    baseline_throttles,
    first_throttles,
    main,
    misconfigured_keys,
    score,
)
from extrusion.scoring.decisions import HELO_NOTE
from extrusion.scoring.judge import helo_note
from extrusion_dev.population import (
    BUSINESS,
    CONSUMER,
    INFECTED,
    LEGITIMATE,
    LIST,
    REJECTION_DAEMON,
    SPAM_BOT,
    WORM,
    Actor,
    BadMessage,
    Population,
    populate,
)
from tests.maillog_helpers import Recorder, feed_lines

CUSTOMERS = 150
DAYS = 0.5  # twelve hours: every kind of actor sends, worms included


@pytest.fixture(scope="module")
def small() -> tuple[str, Population]:
    out = io.StringIO()
    pop = populate(out, customers=CUSTOMERS, days=DAYS, seed=3)
    return out.getvalue(), pop


def test_every_kind_of_customer_is_there(small: tuple[str, Population]) -> None:
    _log, pop = small
    kinds = pop.kinds()
    assert set(kinds) == set(LEGITIMATE) | set(INFECTED)
    assert sum(kinds.values()) == CUSTOMERS
    for a in pop.actors:
        if a.kind in INFECTED:
            assert a.bad, f"{a.name} sent no bad mail"
            assert a.bad_keys <= a.keys
        else:
            assert not a.bad, a.name
    # A quiet customer may send nothing in half a day, but every kind is heard from.
    assert {a.kind for a in pop.actors if a.messages} == set(kinds)
    # A spam bot's owner keeps authenticating beside the bot's port-25 mail.
    bots = [a for a in pop.actors if a.kind == SPAM_BOT]
    assert any(k.startswith("sasl:") for a in bots for k in a.keys - a.bad_keys)
    assert all(k.startswith("ip:") for a in bots for k in a.bad_keys)


def test_keys_belong_to_one_customer_each(small: tuple[str, Population]) -> None:
    _log, pop = small
    seen: dict[str, str] = {}
    for a in pop.actors:
        for k in a.keys:
            assert seen.setdefault(k, a.name) == a.name, k


def test_the_log_reads_cleanly_through_extrusions_parser(small: tuple[str, Population]) -> None:
    log, pop = small
    rec = Recorder()
    feed = feed_lines(rec, log.splitlines())
    assert feed.stats.garbled == 0, feed.stats.examples
    assert len(rec.submissions) >= pop.messages  # plus the MTA's own bounce notices
    ours = [s for s in rec.submissions if s.client_addr]
    assert len(ours) == pop.messages
    assert {s.sender for s in ours} == {k for a in pop.actors for k in a.keys}
    # Every recipient's final outcome the truth recorded is in the log (the MTA's own
    # notices to forged senders and the greylisting deferrals come on top).
    final = [o for o in rec.outcomes if o.status.value in ("sent", "bounced")]
    assert len(final) >= sum(len(v) for v in pop.outcomes.values())
    keyed = {k: sum(1 for _t, ok in v if not ok) for k, v in pop.outcomes.items()}
    assert sum(1 for o in final if o.status.value == "bounced" and o.sender in keyed) \
        == sum(keyed.values())


def test_a_suspect_helo_is_logged_as_extrusions_policy_server_has_postfix_log_it(
        small: tuple[str, Population]) -> None:
    """One END-OF-MESSAGE INFO line per message whose HELO the engine's own judgement finds
    suspect, none for a clean HELO: the log a smarthost wired to extrusion writes."""
    log, pop = small
    notes = [line for line in log.splitlines() if HELO_NOTE in line]
    assert notes and all("smtpd[" in n and ": info: END-OF-MESSAGE from " in n
                         for n in notes)
    assert not any("info: header Received" in line for line in log.splitlines())
    rec = Recorder()
    feed_lines(rec, log.splitlines())
    ours = [s for s in rec.submissions if s.client_addr]
    noted = [s for s in ours if s.helos]
    assert len(noted) == len(notes)
    for s in noted:  # what the line names is what the engine finds again
        assert helo_note(s.helos, s.client_addr, s.client_name, s.envelope_from, ())
    kinds = {a.name: a.kind for a in pop.actors}
    owner = {k: a.name for a in pop.actors for k in a.keys}
    # A worm's broken HELO is always noted (its owner's own mail may share the key);
    # a list's own host name never.
    worm_keys = {k for a in pop.actors if a.kind == WORM for k in a.bad_keys}
    worm_bad = sum(len(a.bad) for a in pop.actors if a.kind == WORM)
    assert worm_bad and sum(1 for s in noted if s.sender in worm_keys) >= worm_bad
    assert not any(s.helos for s in ours if kinds[owner[s.sender]] == LIST)


def test_same_seed_same_log_other_seed_other_log(small: tuple[str, Population]) -> None:
    log, pop = small
    again = io.StringIO()
    twin = populate(again, customers=CUSTOMERS, days=DAYS, seed=3)
    assert again.getvalue() == log
    assert twin.summary() == pop.summary()
    other = io.StringIO()
    populate(other, customers=CUSTOMERS, days=DAYS, seed=4)
    assert other.getvalue() != log


def _hand_made() -> Population:
    """Four infected machines, three legitimate customers, times in seconds from 0."""
    bot = Actor("bot", SPAM_BOT, keys={"sasl:owner", "ip:10.0.0.1"}, bad_keys={"ip:10.0.0.1"},
                bad=[BadMessage(t, "ip:10.0.0.1", n)
                     for t, n in ((0, 2), (60, 0), (120, 3), (180, 1), (240, 2), (300, 5))])
    # Never throttled: everything it got out counts.
    worm = Actor("worm", WORM, keys={"ip:10.0.0.2"}, bad_keys={"ip:10.0.0.2"},
                 bad=[BadMessage(600 + t, "ip:10.0.0.2", 1) for t in range(5)])
    # Fewer than five bad messages: not counted at all.
    quiet = Actor("quiet", WORM, keys={"ip:10.0.0.3"}, bad_keys={"ip:10.0.0.3"},
                  bad=[BadMessage(t, "ip:10.0.0.3", 1) for t in range(4)])
    # Only its owner's SASL login was throttled: the bot itself was not contained.
    owned = Actor("owned", SPAM_BOT, keys={"sasl:o2", "ip:10.0.0.4"}, bad_keys={"ip:10.0.0.4"},
                  bad=[BadMessage(1000 + t, "ip:10.0.0.4", 4) for t in range(6)])
    consumer = Actor("c", CONSUMER, keys={"ip:10.1.0.1", "ip:10.1.0.2"})
    business = Actor("b", BUSINESS, keys={"ip:10.2.0.1"})
    mlist = Actor("l", LIST, keys={"ip:10.3.0.1"})
    daemon = Actor("d", REJECTION_DAEMON, keys={"ip:10.4.0.1"})
    return Population(0.0, 86400.0, [bot, worm, quiet, owned, consumer, business, mlist, daemon])


def test_escapes_and_minutes_count_up_to_the_first_throttle() -> None:
    pop = _hand_made()
    changes = [
        {"time": "1970-01-01T00:05:00+00:00", "sender": "ip:10.0.0.1", "state": "held",
         "score": 9.0, "reason": "x"},
        {"time": "1970-01-01T00:03:20+00:00", "sender": "ip:10.0.0.1", "state": "throttled",
         "score": 5.0, "reason": "x"},
        {"time": "1970-01-01T00:00:10+00:00", "sender": "ip:10.0.0.2", "state": "watch",
         "score": 1.0, "reason": "x"},
        {"time": "1970-01-01T00:10:00+00:00", "sender": "sasl:o2", "state": "throttled",
         "score": 5.0, "reason": "x"},
        {"time": "1970-01-01T01:00:00+00:00", "sender": "ip:10.1.0.2", "state": "throttled",
         "score": 5.0, "reason": "x"},
        {"time": "1970-01-01T02:00:00+00:00", "sender": "ip:10.4.0.1", "state": "misconfigured",
         "score": 0.0, "reason": "x"},
    ]
    first = first_throttles(changes)
    assert first == {"ip:10.0.0.1": 200.0, "sasl:o2": 600.0, "ip:10.1.0.2": 3600.0}
    f = score(pop, first, misconfigured_keys(changes))
    assert (f.infected, f.caught) == (3, 1)
    # bot: 2 + 0 + 3 + 1 before 200 s; worm: all 5; owned: all 24.
    assert f.escaped_median == 6
    assert f.escaped_p90 == 24
    # bot: 200 s after its first message; the other two never.
    assert f.minutes_median is None and f.minutes_p90 is None
    assert f.by_class[CONSUMER] == [1, 1] and f.by_class[BUSINESS] == [0, 1]
    assert (f.legit_throttled, f.legit_total, f.special_throttled) == (1, 4, 0)
    assert (f.daemons, f.daemons_misconfigured, f.others_misconfigured) == (1, 1, 0)

    # All three caught: the worm 2 s after its first message (two got out), the other
    # bot 1 s after its first (one message of four recipients).
    caught = score(pop, {"ip:10.0.0.1": 200.0, "ip:10.0.0.2": 602.0,
                         "ip:10.0.0.4": 1001.0}, None)
    assert caught.caught == 3
    assert caught.escaped_median == 4 and caught.escaped_p90 == 6
    assert caught.minutes_median == pytest.approx(2 / 60)
    assert caught.minutes_p90 == pytest.approx(200 / 60)
    assert caught.daemons_misconfigured is None


def test_the_one_line_rule() -> None:
    hour = 3600.0
    outcomes = {
        # 9 delivered, then failures: the 10th failure tips it (10 of 19 > half).
        "ip:a": [(float(t), True) for t in range(9)] + [(10.0 + t, False) for t in range(12)],
        # Only 9 failures: never.
        "ip:b": [(float(t), False) for t in range(9)],
        # 10 failures, but never 10 within an hour.
        "ip:c": [(t * 400.0, False) for t in range(10)],
        # Exactly half failed is not more than half.
        "ip:d": [(float(t), t % 2 == 0) for t in range(20)],
        # An hour of deliveries drops out of the window before the failures count.
        "ip:e": [(float(t), True) for t in range(50)] + [(hour + 100 + t, False)
                                                          for t in range(10)],
    }
    assert baseline_throttles(outcomes) == {"ip:a": 19.0, "ip:e": hour + 109}


def test_the_benchmark_runs_end_to_end(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    status = main(["--customers", "60", "--days", "0.5", "--seed", "2", "--json",
                   "--keep", str(tmp_path)])
    assert status == 0
    figures = json.loads(capsys.readouterr().out)
    assert sum(figures["population"].values()) == 60
    for side in ("extrusion", "rule"):
        f = figures[side]
        assert f["legit_total"] + f["infected"] <= 60
        assert 0 <= f["caught"] <= f["infected"]
        assert not math.isnan(f["escaped_median"] or 0.0)
    assert (tmp_path / "mail.log").stat().st_size > 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert len(truth["actors"]) == 60
