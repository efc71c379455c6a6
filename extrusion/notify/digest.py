"""One notification: the state changes collected in a window, and their reports as text and JSON.

A digest is built once and handed to every channel, so the mail and the
webhook say the same thing. It lists every change one line each and carries
full reports only for the highest scores, so an outbreak of 500 bots is one
readable mail rather than 500.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from extrusion.report.clean import clean
from extrusion.report.jsonfmt import SCHEMA_VERSION, report_dict
from extrusion.report.model import (
    Counts,
    Finding,
    Report,
    SenderReport,
    StateChangeRecord,
)
from extrusion.report.text import DEFAULT_MAX_DESTINATIONS, sender_lines
from extrusion.report.times import classic, iso_or_none, zone_label
from extrusion.scoring.events import StateChange

KIND = "extrusion.digest"


@dataclass(frozen=True, slots=True)
class Digest:
    """What is sent: subject and text for mail, `json` for the webhook."""

    subject: str
    text: str
    json: str
    senders: tuple[str, ...]
    changes: int


def report_from_changes(changes: Sequence[StateChange], generated_at: float) -> Report:
    """A minimal report when the store cannot give the evidence: what the changes carried."""
    senders = []
    for ch in changes:
        findings = (
            (Finding("evidence", "recorded with the state change", ch.score, ch.evidence),)
            if ch.evidence
            else ()
        )
        senders.append(
            SenderReport(
                key=ch.sender, state=ch.new, score=ch.score, first_seen=ch.time,
                last_seen=ch.time, counts=Counts(), reasons=(ch.reason,) if ch.reason else (),
                findings=findings,
                changes=(StateChangeRecord(ch.time, ch.old, ch.new, ch.score, ch.reason, ch.who),),
            )
        )
    times = [ch.time for ch in changes] or [generated_at]
    return Report(generated_at=generated_at, since=min(times), until=max(times),
                  senders=tuple(senders), source="state changes only (store unavailable)")


def _subject(prefix: str, changes: Sequence[StateChange]) -> str:
    if len(changes) == 1:
        ch = changes[0]
        text = f"{ch.sender} {ch.new} (score {ch.score:.1f}): {ch.reason}"
    else:
        by_state: dict[str, int] = {}
        for ch in changes:
            by_state[ch.new.value] = by_state.get(ch.new.value, 0) + 1
        parts = ", ".join(f"{n} {state}" for state, n in sorted(by_state.items()))
        text = f"{len(changes)} senders flagged: {parts}"
    # clean() also removes CR/LF, so nothing can be smuggled into other headers.
    return clean(f"{prefix} {text}".strip(), 200)


def build_digest(
    changes: Sequence[StateChange],
    report: Report,
    *,
    generated_at: float,
    prefix: str = "[extrusion]",
    hostname: str = "",
    dropped: int = 0,
    tz: tzinfo = UTC,
    max_destinations: int = DEFAULT_MAX_DESTINATIONS,
) -> Digest:
    """The digest of `changes` (the latest change per sender), with `report` as evidence."""
    ordered = sorted(changes, key=lambda ch: (-ch.new.rank, -ch.score, ch.sender))
    where = f" on {clean(hostname)}" if hostname else ""
    first, last = min(ch.time for ch in changes), max(ch.time for ch in changes)
    lines = [
        f"extrusion{where} flagged {len(changes)} sender{'s' if len(changes) != 1 else ''} "
        f"between {classic(first, tz)} and {classic(last, tz)} ({zone_label(tz, last)}):",
        "",
    ]
    lines += [
        f"  {classic(ch.time, tz)}  {ch.new.value:<9} {ch.score:7.1f}  {clean(ch.sender)}  "
        f"{clean(ch.reason, 200)}"
        for ch in ordered
    ]
    if dropped:
        lines += ["", f"  ... and {dropped} more changes not kept (the notification queue was "
                      "full); run `extrusion report` for all of them."]
    shown = report.senders + report.misconfigured
    if shown:
        lines += ["", f"Evidence for the {len(shown)} highest scores follows; "
                      "`extrusion report --sender KEY` shows any sender.", ""]
        for s in shown:
            lines += sender_lines(s, tz, max_destinations)
            lines.append("")
    text = "\n".join(lines).rstrip("\n") + "\n"
    payload: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "kind": KIND,
        "generated_at": iso_or_none(generated_at),
        "hostname": clean(hostname),
        "changes": [
            {"time": iso_or_none(ch.time), "sender": clean(ch.sender), "old": ch.old.value,
             "new": ch.new.value, "score": round(ch.score, 3), "reason": clean(ch.reason)}
            for ch in ordered
        ],
        "dropped": dropped,
        "report": report_dict(report),
    }
    return Digest(
        subject=_subject(prefix, ordered),
        text=text,
        json=json.dumps(payload, ensure_ascii=False),
        senders=tuple(ch.sender for ch in ordered),
        changes=len(ordered),
    )
