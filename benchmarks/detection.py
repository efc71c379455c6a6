"""Detection on a whole smarthost population: what the engine contains, how fast, at what cost.

    .venv/bin/python benchmarks/detection.py [--customers 2000] [--days 2] [--seed 1] [--json]

Generates a population with `extrusion_dev.population` (consumers,
businesses with mailshots, mailing lists, bounce relays, rejection daemons,
spam bots, worms; the truth about each), runs `extrusion replay LOG --json`
on it with the shipped conf/extrusion.toml (replay's own fresh, throw-away
SQLite store), scores the state changes against the truth and prints the
figures beside those of a one-line rule computed directly on the log's
outcomes: a sender is throttled once more than 50 % of its recipients'
final outcomes in the last hour failed, with at least 10 failed.

Definitions (an "actor" is one customer; its mail may come under several
sender keys: a new dynamic address each day, the owner's SASL login beside
a bot's port-25 mail):

- throttled: a key of the actor reached `throttled`, `held` or `blocked`.
  For an infected machine only the keys that carried its bad mail count
  (throttling the owner's SASL login does not stop the bot).
- recall: infected machines (spam bots, worms) that sent at least
  `MIN_BAD_MESSAGES` bad messages, and the share of them throttled.
- escaped: for each such machine, the recipients of its bad messages that the
  smarthost accepted before the machine's first throttle (message time
  strictly before it) and that were delivered or queued (final status sent,
  including greylisted then delivered); never throttled: all of them.
  Reported as median (mean of the middle two) and 90th percentile (nearest
  rank).
- minutes to throttle: from the machine's first bad message to its first
  throttle; a machine never throttled counts as infinitely late ("never").
- legitimate throttled: consumers, businesses, lists, bounce relays and
  rejection daemons throttled at any time, by class.
- misconfigured: rejection daemons with a `"state": "misconfigured"` object in
  `replay --json` for one of their keys (and, apart, other actors reported so).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, TextIO, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extrusion_dev.population import (  # noqa: E402
    BOUNCE_RELAY,
    INFECTED,
    LEGITIMATE,
    LIST,
    REJECTION_DAEMON,
    Population,
    populate,
)

MIN_BAD_MESSAGES = 5
THROTTLED_OR_WORSE = frozenset({"throttled", "held", "blocked"})
MISCONFIGURED = "misconfigured"
SPECIAL = (LIST, BOUNCE_RELAY, REJECTION_DAEMON)
# The one-line rule: more than this share failed in the window, at least this many.
BASELINE_WINDOW = 3600.0
BASELINE_SHARE = 0.5
BASELINE_MIN_FAILED = 10


@dataclass
class Figures:
    infected: int  # machines that sent at least MIN_BAD_MESSAGES bad messages
    caught: int
    legit_total: int
    legit_throttled: int
    by_class: dict[str, list[int]]  # class -> [throttled, of]
    special_throttled: int  # lists, bounce relays and rejection daemons
    escaped_median: float | None  # None: no infected machine
    escaped_p90: float | None
    minutes_median: float | None  # None: never
    minutes_p90: float | None
    daemons: int
    daemons_misconfigured: int | None  # None: the rule has no such verdict
    others_misconfigured: int | None


def first_throttles(changes: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """Sender key -> time it first reached throttled or worse, from `replay --json` objects."""
    first: dict[str, float] = {}
    for c in changes:
        if c["state"] in THROTTLED_OR_WORSE:
            key, t = str(c["sender"]), _when(c["time"])
            if key not in first or t < first[key]:
                first[key] = t
    return first


def misconfigured_keys(changes: Iterable[Mapping[str, object]]) -> set[str]:
    return {str(c["sender"]) for c in changes if c["state"] == MISCONFIGURED}


def _when(value: object) -> float:
    return value if isinstance(value, float) else datetime.fromisoformat(str(value)).timestamp()


def baseline_throttles(outcomes: Mapping[str, list[tuple[float, bool]]]) -> dict[str, float]:
    """When the one-line rule first throttles each key: >50 % failed in an hour, ≥ 10 failed."""
    first: dict[str, float] = {}
    for key, seq in outcomes.items():
        window: deque[tuple[float, bool]] = deque()
        failed = 0
        for t, delivered in sorted(seq):
            window.append((t, delivered))
            failed += not delivered
            while window[0][0] <= t - BASELINE_WINDOW:
                failed -= not window.popleft()[1]
            if failed >= BASELINE_MIN_FAILED and failed > BASELINE_SHARE * len(window):
                first[key] = t
                break
    return first


def percentile(values: list[float], p: float) -> float:
    """Nearest rank; `inf` stands for never."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def score(pop: Population, throttled: Mapping[str, float],
          misconfigured: set[str] | None) -> Figures:
    """The figures for one set of first-throttle times (engine or rule) against the truth."""
    by_class = {k: [0, 0] for k in LEGITIMATE}
    escaped: list[float] = []
    minutes: list[float] = []
    infected = caught = 0
    daemons = daemons_reported = others_reported = 0
    for a in pop.actors:
        if a.kind in INFECTED:
            if len(a.bad) < MIN_BAD_MESSAGES:
                continue
            infected += 1
            when = min((throttled[k] for k in a.bad_keys if k in throttled), default=math.inf)
            caught += when < math.inf
            escaped.append(sum(m.escaped for m in a.bad if m.time < when))
            first_bad = min(m.time for m in a.bad)
            minutes.append(max(0.0, (when - first_bad) / 60))
            continue
        by_class[a.kind][1] += 1
        by_class[a.kind][0] += any(k in throttled for k in a.keys)
        reported = misconfigured is not None and bool(a.keys & misconfigured)
        if a.kind == REJECTION_DAEMON:
            daemons += 1
            daemons_reported += reported
        else:
            others_reported += reported
    legit_total = sum(n for _f, n in by_class.values())
    return Figures(
        infected=infected, caught=caught, legit_total=legit_total,
        legit_throttled=sum(f for f, _n in by_class.values()), by_class=by_class,
        special_throttled=sum(by_class[k][0] for k in SPECIAL),
        escaped_median=statistics.median(escaped) if escaped else None,
        escaped_p90=percentile(escaped, 90) if escaped else None,
        minutes_median=_finite(statistics.median(minutes)) if minutes else None,
        minutes_p90=_finite(percentile(minutes, 90)) if minutes else None,
        daemons=daemons,
        daemons_misconfigured=daemons_reported if misconfigured is not None else None,
        others_misconfigured=others_reported if misconfigured is not None else None,
    )


def _finite(x: float) -> float | None:
    return None if math.isinf(x) else x


def replay(log: Path, config: Path) -> list[dict[str, object]]:
    """`extrusion replay LOG --json`, as an operator runs it; one dict per state change."""
    exe = Path(sys.executable).with_name("extrusion")
    proc = subprocess.run([str(exe), "replay", str(log), "--json", "--config", str(config)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"extrusion replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _num(x: float | None, digits: int = 0, none: str = "never") -> str:
    if x is None or math.isinf(x):
        return none
    return f"{x:,.{digits}f}"


def table(engine: Figures, rule: Figures) -> str:
    def share(f: Figures) -> str:
        return (f"{f.legit_throttled} of {f.legit_total:,} "
                f"({100 * f.legit_throttled / max(1, f.legit_total):.2f}%)")

    def cls(f: Figures) -> str:
        return ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in f.by_class.items())

    def misc(f: Figures) -> str:
        if f.daemons_misconfigured is None:
            return "–"
        return f"{f.daemons_misconfigured} of {f.daemons} (others: {f.others_misconfigured})"

    rows = [
        ("infected machines (≥ 5 bad messages) throttled or worse",
         f"{engine.caught} of {engine.infected}", f"{rule.caught} of {rule.infected}"),
        ("spam recipients escaped before the first throttle, median",
         _num(engine.escaped_median, 1, "–"), _num(rule.escaped_median, 1, "–")),
        ("spam recipients escaped before the first throttle, p90",
         _num(engine.escaped_p90, 0, "–"), _num(rule.escaped_p90, 0, "–")),
        ("minutes from infection to throttle, median",
         _num(engine.minutes_median, 1), _num(rule.minutes_median, 1)),
        ("minutes from infection to throttle, p90",
         _num(engine.minutes_p90, 1), _num(rule.minutes_p90, 1)),
        ("legitimate customers throttled or worse", share(engine), share(rule)),
        ("  by class", cls(engine), cls(rule)),
        ("mailing lists, bounce relays, rejection daemons throttled",
         str(engine.special_throttled), str(rule.special_throttled)),
        ("rejection daemons reported as misconfigured", misc(engine), misc(rule)),
    ]
    out = ["| figure | extrusion | one-line rule |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out)


class _Truth(Protocol):
    def summary(self) -> object: ...


P = TypeVar("P", bound=_Truth)


def generate_and_replay(write: Callable[[TextIO], P], config: Path, keep: Path | None,
                        prefix: str) -> tuple[P, list[dict[str, object]], float, float]:
    """Write a population's log with `write`, replay it; the population, the state
    changes and the seconds each took. `keep`: the log, the truth and the replay's
    output stay in that directory."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        where = keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        log = where / "mail.log"
        started = time.perf_counter()
        with open(log, "w", encoding="utf-8") as f:
            pop = write(f)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        changes = replay(log, config)
        replayed = time.perf_counter() - started
        if keep:
            (where / "truth.json").write_text(json.dumps(pop.summary()))
            (where / "replay.jsonl").write_text("".join(json.dumps(c) + "\n" for c in changes))
    return pop, changes, generated, replayed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", type=Path, default=REPO / "conf" / "extrusion.toml")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--keep", type=Path, default=None,
                    help="write the log, the truth and the replay output into this directory")
    args = ap.parse_args(argv)
    if args.customers < 10 or args.days <= 0:
        ap.error("--customers must be at least 10 and --days positive")

    pop, changes, generated, replayed = generate_and_replay(
        lambda f: populate(f, customers=args.customers, days=args.days, seed=args.seed),
        args.config, args.keep, "bench-detection-")
    engine = score(pop, first_throttles(changes), misconfigured_keys(changes))
    rule = score(pop, baseline_throttles(pop.outcomes), None)
    if args.json:
        print(json.dumps({"population": pop.kinds(), "lines": pop.lines,
                          "messages": pop.messages, "extrusion": asdict(engine),
                          "rule": asdict(rule)}))
        return 0
    print(f"population: {args.customers:,} customers over {args.days:g} days, seed {args.seed}: "
          f"{pop.messages:,} messages, {pop.lines:,} lines "
          f"(generated in {generated:.1f} s, replayed in {replayed:.1f} s)")
    print("  " + ", ".join(f"{k} {n}" for k, n in pop.kinds().items()))
    print()
    print(table(engine, rule))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
