"""What `extrusion replay` shows: the verdicts per sender, the summary table, the progress line."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from extrusion.maillog.feedsink import FeedStats
from extrusion.maillog.lines import MAX_LINE
from extrusion.maillog.timestamps import iso_z
from extrusion.scoring.decisions import phrase
from extrusion.scoring.events import Notice, State, StateChange
from extrusion.scoring.memory import top_finding

PROGRESS_EVERY_SECONDS = 0.5
TOP_SENDERS = 10


@dataclass(frozen=True)
class SenderResult:
    state: State  # at the end of the log
    score: float  # at the end of the log
    peak: State  # the highest state reached during the log
    reason: str  # why it reached its peak (or its strongest finding)


@dataclass
class ReplayResult:
    """Everything a replay found; `senders` holds every sender the engine judged."""

    lines: int = 0
    seconds: float = 0.0
    changes: list[StateChange] = field(default_factory=list)
    senders: dict[str, SenderResult] = field(default_factory=dict)
    error: str = ""

    def flagged(self) -> list[str]:
        """Senders that left `ok` at some point, worst first."""
        hit = [(r.peak.rank, r.score, k) for k, r in self.senders.items() if r.peak is not State.OK]
        return [k for _rank, _score, k in sorted(hit, reverse=True)]


def json_line(change: StateChange) -> str:
    """One state change as the `--json` output promises, exactly these keys in this order."""
    return json.dumps({
        "time": iso_z(change.time), "sender": change.sender, "state": change.new.value,
        "score": change.score, "reason": change.reason,
    }, ensure_ascii=False)


def notice_line(notice: Notice) -> str:
    """A sender found misconfigured (a rejection daemon), in the state change's shape:
    `"state": "misconfigured"`."""
    return json.dumps({
        "time": iso_z(notice.time), "sender": notice.sender, "state": notice.kind,
        "score": notice.score, "reason": notice.reason,
    }, ensure_ascii=False)


def final_states(result: ReplayResult, store: Any, half_life: float, end: float) -> None:
    """Each stored sender's end state and score, and the worst state it reached."""
    peaks: dict[str, StateChange] = {}
    for c in result.changes:
        best = peaks.get(c.sender)
        if best is None or c.new.rank > best.new.rank:
            peaks[c.sender] = c
    for row in store.senders():
        score = row.score_at(end, half_life)
        peak = peaks.get(row.key)
        state = State(row.state)
        result.senders[row.key] = SenderResult(
            state=state, score=score,
            peak=peak.new if peak is not None and peak.new.rank > state.rank else state,
            # A sender that never left ok has no reason: one bounce is not "too many
            # delivery failures".
            reason=peak.reason if peak is not None
            else "" if state is State.OK else _top_reason(row.findings),
        )


def _top_reason(findings: dict[str, object]) -> str:
    best = top_finding(findings)
    return phrase(best) if best else ""


def summary(result: ReplayResult, stats: FeedStats, stream: TextIO) -> None:
    s, j = stats, stats.join
    rate = result.lines / result.seconds if result.seconds else 0.0
    w = stream.write
    w(f"replay: {result.lines:,} lines in {result.seconds:.1f} s ({rate:,.0f} lines/s)\n")
    w(f"  lines: {s.parsed:,} parsed, {s.ignored:,} of no interest, "
      f"{s.garbled:,} skipped as unreadable"
      + (f" ({s.too_long:,} over {MAX_LINE:,} characters)" if s.too_long else "") + "\n")
    w(f"  events: {j.submissions:,} messages, {j.outcomes:,} recipient outcomes "
      f"({j.unattributed:,} without a known sender), {len(result.changes)} state changes\n")
    if j.clients.evidence or j.clients.verdicts_unjoined:
        w(f"  client evidence: {j.clients.evidence:,} (refused sessions, postscreen, spam "
          f"filters; {j.clients.verdicts_unjoined:,} filter verdicts without their message)\n")
    final = {state: 0 for state in State}
    peak = {state: 0 for state in State}
    for r in result.senders.values():
        final[r.state] += 1
        peak[r.peak] += 1
    w("\nsenders by state      at the end   at their worst\n")
    for state in State:
        w(f"  {state.value:<18} {final[state]:>10,} {peak[state]:>16,}\n")
    ranked = sorted(result.senders.items(),
                    key=lambda kv: (-kv[1].peak.rank, -kv[1].score, kv[0]))[:TOP_SENDERS]
    ranked = [kv for kv in ranked if kv[1].score > 0 or kv[1].peak is not State.OK]
    if ranked:
        width = max(len(k) for k, _ in ranked)
        w("\ntop senders\n")
        w(f"  {'score':>7}  {'now':<10} {'worst':<10} {'sender':<{width}}  reason\n")
        for key, r in ranked:
            w(f"  {r.score:>7.1f}  {r.state.value:<10} {r.peak.value:<10} {key:<{width}}  "
              f"{r.reason}\n")
    if s.garbled:
        w(f"\nunreadable lines ({s.garbled:,}; the first few kept, escaped):\n")
        for line in s.examples:
            # Kept escaped by the feed (a raw ESC or CR from a log must not drive the
            # terminal): shown as they are, not escaped twice.
            w(f"  {line}\n")


class Progress:
    """A single stderr line, rewritten in place; only on a terminal.

    Lines read, MB/s and, when the input's size is known (files, not stdin),
    the share done and the time left, from the bytes read on disk (for a
    compressed file: its compressed bytes, so the ETA holds for any format).
    """

    def __init__(self, stream: TextIO, enabled: bool, total_bytes: int = 0) -> None:
        self.stream = stream
        self.enabled = enabled
        self.total_bytes = total_bytes
        self.start = time.monotonic()
        self.next = self.start + PROGRESS_EVERY_SECONDS
        self.done_bytes = 0

    def line(self, lines: int, flagged: int, now: float) -> str:
        """The progress line's text (without the carriage return)."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.done_bytes / elapsed
        text = f"replay: {lines:,} lines  {rate / 1e6:,.1f} MB/s"
        if self.total_bytes:
            share = min(self.done_bytes / self.total_bytes, 1.0)
            text += f"  {share:4.0%}"
            if rate > 0:
                left = max(self.total_bytes - self.done_bytes, 0) / rate
                text += f"  ETA {int(left // 60)}:{int(left % 60):02d}"
        return text + f"  {flagged} sender{'s' if flagged != 1 else ''} flagged "

    def update(self, lines: int, flagged: int, done_bytes: int | None = None, *,
               force: bool = False) -> None:
        if done_bytes is not None:
            self.done_bytes = done_bytes
        now = time.monotonic()
        if not self.enabled or (now < self.next and not force):
            return
        self.next = now + PROGRESS_EVERY_SECONDS
        self.stream.write("\r" + self.line(lines, flagged, now))
        self.stream.flush()

    def done(self, lines: int, flagged: int) -> None:
        """The final count stays on the screen."""
        if self.enabled:
            self.update(lines, flagged, force=True)
            self.stream.write("\n")
            self.stream.flush()
