"""What the engine remembers about one sender: score, state, pins, windows of evidence.

The score is kept in two parts: `base` (the store's merged view, or what was
already handed to it) and `pending` (evidence this process found since its
last flush). Both decay exponentially; the store adds the pending part to
what other processes wrote, so MTAs sharing a PostgreSQL store sum their
evidence instead of overwriting each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from extrusion.scoring.events import State
from extrusion.scoring.lazyparts import LazyParts
from extrusion.scoring.limits import RateState
from extrusion.scoring.merging import MAX_FINDING_EXAMPLES
from extrusion.scoring.rows import decay
from extrusion.scoring.windowset import WindowSet

MAX_EXAMPLES = MAX_FINDING_EXAMPLES  # examples kept per finding for the report
RELEASED = "released"  # the finding an operator's release leaves behind

# The evidence windows of a sender, each made on its first use. Most senders never
# fill one; made up front, nine objects (and a baseline) per sender cost more than the
# decision at a sender's first sight, mostly in the garbage collector walking them
# (benchmarks/scale.py).
WINDOWS = ("failed", "auto_failures", "lists", "helos", "refused", "attempted",
           "env_domains", "rcpt_domains", "shown")
NO_SPANS: Mapping[str, float] = MappingProxyType({})


class SenderMemory(LazyParts):
    """One sender as this process knows it, its rate counters included: a RateState
    of its own would be a second object per sender for the garbage collector to walk
    again and again, a third of the CPU of a sender's first sight (benchmarks/scale.py).
    Its evidence windows and baseline are made on first use (LazyParts, WINDOWS)."""

    __slots__ = (
        "base",
        "base_time",
        "by_probation",
        "client_addr",
        "cls",
        "config_pin",
        "dirty",
        "findings",
        "findings_dirty",
        "first_seen",
        "key",
        "last_seen",
        "list_until",
        "others_failed",
        "pending",
        "pending_time",
        "pin",
        "pin_dirty",
        "pinned_by",
        "pinned_reason",
        "probation",
        "probation_end",
        "reason",
        "released_at",
        "reset",
        "spans",
        "state",
        "state_dirty",
        "state_since",
        "version",
        "vouched_until",
        "window",
        "written",
    )

    def __init__(self, key: str, now: float, window: float, cls: str = "default") -> None:
        self.key = key
        self.cls = cls
        self.state = State.OK
        self.state_since = now
        self.reason = ""
        self.base = 0.0
        self.base_time = now
        self.pending = 0.0
        self.pending_time = now
        self.first_seen = now
        self.last_seen = now
        self.version = 0
        # Operator pin (from the store/CLI/API) and the config override in force.
        self.pin: str | None = None
        self.pinned_by: str | None = None
        self.pinned_reason: str | None = None
        self.config_pin: Any = None  # extrusion.config.Override | None
        self.client_addr = ""
        # Evidence windows, made on first use: `window` seconds long unless `spans`
        # (Judge.set_windows) names another length for one of them.
        self.window = window
        self.spans = NO_SPANS
        # The other hosts' (failed, attempted) in their windows (scoring/failwindow.py).
        self.others_failed = (0, 0)
        # Probation (extrusion.scoring.probation): None when not on it.
        self.probation: Any = None  # ProbationState | None
        self.probation_end = ""  # why it last left probation, for the state change
        self.by_probation = False  # its `watch` state is the probation's, not the score's
        self.vouched_until = 0.0  # good outcomes ended its probation: not again before
        # Until when it counts as a mailing list for its rate budget (limits.budget()).
        self.list_until = 0.0
        self.findings: dict[str, dict[str, Any]] = {}
        # Each finding's (count, weight) as last written: the store adds only the news.
        self.written: dict[str, tuple[int, float]] = {}
        RateState.__init__(self)  # its message and recipient counters, none yet
        # What the next flush must write.
        self.dirty = False
        self.state_dirty = False
        self.findings_dirty = False
        self.pin_dirty: str | None = None
        self.reset = False
        self.released_at = 0.0

    def _window(self, name: str) -> WindowSet:
        return WindowSet(self.spans.get(name, self.window))

    @property
    def rates(self) -> RateState:
        """The sender's rate counters: kept in its memory itself."""
        return self

    # --- score ---------------------------------------------------------------------------

    def score(self, now: float, half_life: float) -> float:
        if self.base <= 0.0 and self.pending <= 0.0:
            return 0.0  # most senders: no evidence, and decay() of nothing is nothing
        return decay(self.base, now - self.base_time, half_life) + decay(
            self.pending, now - self.pending_time, half_life
        )

    def score_bound(self) -> float:
        """An upper bound of `score()` at any time: decay never adds (not even when the
        clock runs backwards), so the two parts can only have shrunk."""
        return max(self.base, 0.0) + max(self.pending, 0.0)

    def add(self, weight: float, now: float, half_life: float) -> None:
        if weight <= 0.0:
            return
        self.pending = decay(self.pending, now - self.pending_time, half_life) + weight
        self.pending_time = max(self.pending_time, now)
        self.dirty = True

    def raise_to(self, floor: float, now: float, half_life: float) -> None:
        self.add(floor - self.score(now, half_life), now, half_life)

    def forget(self, now: float, who: str = "") -> None:
        """An operator's release: the evidence so far no longer counts (here and, through
        the `released` finding, in every other process sharing the store)."""
        self.reset = True
        self.dirty = True
        self.findings_dirty = True
        self.forget_locally(now, {RELEASED: {"by": who, "time": now}})

    def forget_locally(self, now: float, findings: dict[str, Any]) -> None:
        """Drop the evidence because this or another process released the sender."""
        self.base = self.pending = 0.0
        self.base_time = self.pending_time = now
        for name in WINDOWS:
            if (window := self.made(name)) is not None:
                window.clear()
        self.probation = None
        self.others_failed = (0, 0)  # the others' windows from before it count no more
        self.findings = dict(findings)
        self.written = tallies(self.findings)
        self.released_at = float(findings.get(RELEASED, {}).get("time", now))

    # --- findings (the report's "why") ---------------------------------------------------

    # `float | int`, not `float`: mypyc cannot compile a float default followed by
    # **extra (it crashes writing the signature); the values are the same.
    def note(self, kind: str, now: float, weight: float | int = 0.0, example: str = "",
             **extra: Any) -> None:
        f = self.findings.pop(kind, None)
        if f is None:
            f = {"count": 0, "weight": 0.0, "examples": [], "first": now}
        # Kept in the order they were last noted: a tie in `top_finding` goes to the
        # evidence that came in last, whichever clock stamped it (the milter's events
        # carry the wall clock, the log's whole seconds that may look earlier).
        self.findings[kind] = f
        f["count"] += 1
        f["weight"] = round(f["weight"] + weight, 3)
        f["last"] = now
        if example and example not in f["examples"] and len(f["examples"]) < MAX_EXAMPLES:
            f["examples"].append(example)
        f.update(extra)
        self.findings_dirty = True
        self.dirty = True

    def top_finding(self, kinds: tuple[str, ...] | None = None) -> str:
        """The finding that weighs most (ties: the one noted last)."""
        return top_finding(self.findings, kinds)


def top_finding(findings: Mapping[str, Any], kinds: tuple[str, ...] | None = None) -> str:
    """The kind of the finding that weighs most (ties: the one noted last), "" for none:
    one rule for the engine's reasons, `extrusion senders` and replay's summary."""
    best, best_weight = "", -1.0
    for kind, f in findings.items():
        if kinds is not None and kind not in kinds:
            continue
        weight = float(f.get("weight", 0.0)) if isinstance(f, dict) else 0.0
        if weight >= best_weight:
            best, best_weight = kind, weight
    return best


def tallies(findings: dict[str, Any]) -> dict[str, tuple[int, float]]:
    """Each finding's (count, weight)."""
    out: dict[str, tuple[int, float]] = {}
    for kind, f in findings.items():
        if isinstance(f, dict):
            try:
                out[kind] = (int(f.get("count", 0) or 0), float(f.get("weight", 0.0) or 0.0))
            except (TypeError, ValueError):
                continue
    return out


def news(findings: dict[str, Any], written: dict[str, tuple[int, float]]
         ) -> dict[str, list[float]]:
    """What was noted of each finding since `written`: [count, weight] to add."""
    return {kind: [n - written.get(kind, (0, 0.0))[0],
                   round(w - written.get(kind, (0, 0.0))[1], 3)]
            for kind, (n, w) in tallies(findings).items()}


def copy_findings(findings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Findings are {kind: {field: scalar or list}}: two levels to copy, not deepcopy's walk."""
    return {k: {f: list(v) if isinstance(v, list) else v for f, v in d.items()}
            for k, d in findings.items()}
