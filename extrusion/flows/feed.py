"""Flow records into the engine: one line at a time, a bad record counted and skipped.

`FlowFeed.line` is the callback a `FileFollower` hands each line of pmacct's
output to (live: `flows follow`, `serve`), or `flows replay` feeds from
files. Each finding of the analysis goes to the engine as a `FlowEvidence`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from extrusion.config import Config
from extrusion.flows.analysis import FlowAnalysis
from extrusion.flows.mxnotes import notes_for
from extrusion.flows.parse import parse
from extrusion.flows.records import BadRecord
from extrusion.scoring.events import FlowEvidence

log = logging.getLogger("extrusion.flows")

# Bad records logged in full: the first few, then one in this many.
BAD_LOGGED = 5
BAD_LOG_EVERY = 1000
# The checkpoint's name for pmacct's output, apart from the mail log's.
CHECKPOINT_PREFIX = "flows:"


class FlowSink(Protocol):
    def direct_sending(self, event: FlowEvidence) -> None: ...


@dataclass(slots=True)
class FlowStats:
    lines: int = 0
    parsed: int = 0
    bad: int = 0
    findings: int = 0


class FlowFeed:
    def __init__(self, engine: FlowSink, config: Config) -> None:
        self.engine = engine
        self.analysis = FlowAnalysis(config, notes_for(engine, config))
        self.stats = FlowStats()
        self.findings: list[FlowEvidence] = []  # the latest few, for `flows replay`
        self.keep_findings = False

    def configure(self, config: Config) -> None:
        """A reloaded config (SIGHUP): new ranges, allow lists, sampling, thresholds."""
        self.analysis.notes = notes_for(self.engine, config)
        self.analysis.configure(config)

    def line(self, text: str) -> None:
        self.stats.lines += 1
        if not text.strip():
            return
        try:
            rec = parse(text)
        except BadRecord as exc:
            self._bad(str(exc), text)
            return
        if rec is None:
            return  # nfdump's header or summary line
        self.stats.parsed += 1
        evidence = self.analysis.record(rec)
        if evidence is None:
            return
        self.stats.findings += 1
        if self.keep_findings:
            self.findings.append(evidence)
        self.engine.direct_sending(evidence)

    def too_long(self, head: str) -> None:
        self._bad("longer than a flow record can be", head)

    def _bad(self, why: str, text: str) -> None:
        self.stats.bad += 1
        n = self.stats.bad
        if n <= BAD_LOGGED or n % BAD_LOG_EVERY == 0:
            log.warning("flow record skipped (%d so far): %s: %.120r", n, why, text)
