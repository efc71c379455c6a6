"""Detection on an ISP's incoming MX: which senders `mode = "mx"` contains, against the truth.

    .venv/bin/python benchmarks/detection_mx.py [--scale 1] [--seed 1] [--filter spamd] [--json]

Generates a day of a Postfix 3.7 MX with `extrusion_dev.mxpopulation`
(big providers, small MTAs, newsletter senders, Mailman hosts, forwarders,
business customers of the ISP, dictionary-attack bots, the ISP's own infected
customers; the truth about each), runs `extrusion replay LOG --json` on it
with conf/extrusion-mx.toml (replay's fresh throw-away store), and prints
per group the figures beside their targets. The replay and the reading of
its output are `benchmarks/detection.py`'s.

Definitions:

- throttled: a key of the sender reached `throttled`, `held` or `blocked`;
  "watch only": it reached `watch` and never more.
- bots caught: bots throttled or worse, those postscreen refused included
  (they never reach smtpd; only postscreen's reject lines show them).
  Target: at least 95 %.
- legitimate groups (big providers, small MTAs, newsletter senders, list
  servers, forwarders, business customers) throttled: target 0 each.
- own customers contained: the ISP's own infected machines sending to the MX
  from outside, throttled or worse; target 100 %, with a median of at most 15
  minutes from the first line of the machine in the log to its first throttle
  (a machine never throttled counts as never, which no median beats).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.detection import (  # noqa: E402
    _finite,
    _num,
    first_throttles,
    generate_and_replay,
    percentile,
)
from extrusion_dev.mxpopulation import (  # noqa: E402
    BAD,
    BOT,
    LEGITIMATE,
    OWN_INFECTED,
    MxPopulation,
    populate_mx,
)
from extrusion_dev.mxsession import FILTERS, SPAMD  # noqa: E402

BOTS_TARGET = 0.95  # share of bots caught
OWN_MEDIAN_TARGET = 15.0  # minutes, own customers arriving from outside


@dataclass
class Group:
    senders: int
    throttled: int  # throttled, held or blocked at some time
    watch_only: int  # watch and never more
    minutes_median: float | None  # first line to first throttle; None: never / no sender
    minutes_p90: float | None


def watched(changes: Iterable[Mapping[str, object]]) -> set[str]:
    """Sender keys that reached `watch` at some time."""
    return {str(c["sender"]) for c in changes if c["state"] == "watch"}


def group_figures(pop: MxPopulation, throttled: Mapping[str, float], watch: set[str],
                  group: str, style: str | None = None) -> Group:
    """One group's (or one bot style's) figures against the first-throttle times."""
    members = [s for s in pop.senders if s.group == group and style in (None, s.style)]
    minutes: list[float] = []
    caught = watch_only = 0
    for s in members:
        when = min((throttled[k] for k in s.keys if k in throttled), default=math.inf)
        caught += when < math.inf
        watch_only += when == math.inf and bool(s.keys & watch)
        minutes.append(max(0.0, (when - s.first) / 60))
    return Group(
        senders=len(members), throttled=caught, watch_only=watch_only,
        minutes_median=_finite(statistics.median(minutes)) if minutes else None,
        minutes_p90=_finite(percentile(minutes, 90)) if minutes else None,
    )


def score(pop: MxPopulation, changes: list[dict[str, object]]) -> dict[str, Group]:
    """Every group's figures; bots also by style (`bot:aggressive`, …)."""
    first, watch = first_throttles(changes), watched(changes)
    out = {g: group_figures(pop, first, watch, g) for g in (*BAD, *LEGITIMATE)}
    for style in sorted({s.style for s in pop.senders if s.group == BOT}):
        out[f"{BOT}:{style}"] = group_figures(pop, first, watch, BOT, style)
    return out


def targets(figures: Mapping[str, Group]) -> dict[str, bool]:
    """Whether each target is met."""
    bots, own = figures[BOT], figures[OWN_INFECTED]
    met = {
        BOT: bots.throttled >= math.ceil(BOTS_TARGET * bots.senders),
        OWN_INFECTED: own.throttled == own.senders and own.minutes_median is not None
        and own.minutes_median <= OWN_MEDIAN_TARGET,
    }
    met.update({g: figures[g].throttled == 0 for g in LEGITIMATE})
    return met


def table(figures: Mapping[str, Group]) -> str:
    met = targets(figures)
    out = ["| group | senders | throttled or worse | watch only | minutes to throttle, "
           "median / p90 | target | met |", "|---|---|---|---|---|---|---|"]
    for name, f in figures.items():
        group = name.partition(":")[0]
        if name == BOT:
            want = f"≥ {math.ceil(BOTS_TARGET * f.senders)} caught"
        elif name == OWN_INFECTED:
            want = f"all {f.senders}, median ≤ {OWN_MEDIAN_TARGET:g} min"
        elif group in LEGITIMATE:
            want = "0"
        else:
            want = ""
        ok = ("yes" if met[name] else "**no**") if name in met else ""
        minutes = (f"{_num(f.minutes_median, 1)} / {_num(f.minutes_p90, 1)}"
                   if group in BAD else "")
        out.append(f"| {name} | {f.senders} | {f.throttled} | {f.watch_only} | {minutes} "
                   f"| {want} | {ok} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="volume of the day; 1 is about 450,000 lines")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--filter", choices=FILTERS, default=SPAMD,
                    help="the spam filter whose lines the log carries")
    ap.add_argument("--config", type=Path, default=REPO / "conf" / "extrusion-mx.toml")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--keep", type=Path, default=None,
                    help="write the log, the truth and the replay output into this directory")
    args = ap.parse_args(argv)
    if not 0 < args.scale <= 10:
        ap.error("--scale must be above 0 and at most 10")

    pop, changes, generated, replayed = generate_and_replay(
        lambda f: populate_mx(f, scale=args.scale, seed=args.seed, spam_filter=args.filter),
        args.config, args.keep, "bench-detection-mx-")

    figures = score(pop, changes)
    if args.json:
        print(json.dumps({"population": pop.groups(), "lines": pop.lines,
                          "sessions": pop.sessions,
                          "groups": {k: asdict(v) for k, v in figures.items()},
                          "targets_met": targets(figures)}))
        return 0
    print(f"MX population: scale {args.scale:g}, seed {args.seed}, {args.filter}: "
          f"{pop.sessions:,} connections, {pop.lines:,} lines "
          f"(generated in {generated:.1f} s, replayed in {replayed:.1f} s)")
    print("  " + ", ".join(f"{k} {n}" for k, n in pop.groups().items()))
    print()
    print(table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
