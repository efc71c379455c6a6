"""A sender as JSON: one shape for `senders --json`, `show --json` and the operator API.

Keys are only ever added. Times are POSIX seconds; the score is decayed to
`now` with the configured half-life, so every reader sees the same number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from extrusion.scoring.events import StateChange
from extrusion.scoring.rows import SenderRow


def sender_json(row: SenderRow, half_life: float, now: float, *,
                findings: bool = True) -> dict[str, Any]:
    """The sender's stored state; `findings` False leaves out the (larger) evidence,
    as the API's list does."""
    out: dict[str, Any] = {
        "sender": row.key,
        "state": row.state,
        "score": round(row.score_at(now, half_life), 3),
        "class": row.cls,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "state_since": row.state_since,
        "pinned": row.pinned,
        "pinned_by": row.pinned_by,
        "pinned_reason": row.pinned_reason,
    }
    if findings:
        out["findings"] = row.findings
    return out


#: Entries of the audit trail shown per sender, the newest ones (`show` and the API).
AUDIT_ENTRIES = 100


def sender_detail_json(row: SenderRow, trail: Sequence[StateChange], half_life: float,
                       now: float) -> dict[str, Any]:
    """One sender with its findings and the newest of its audit trail: the API's
    `GET /senders/KEY`, and the core of `extrusion show --json`."""
    return {**sender_json(row, half_life, now), **audit_json(trail)}


def audit_json(trail: Sequence[StateChange]) -> dict[str, Any]:
    """The newest `AUDIT_ENTRIES` of a sender's audit trail, and how many were left out."""
    return {
        "audit": [change_json(c) for c in trail[-AUDIT_ENTRIES:]],
        "audit_omitted": max(len(trail) - AUDIT_ENTRIES, 0),
    }


def change_json(change: StateChange) -> dict[str, Any]:
    """One audit-trail entry, with the evidence the engine recorded for it."""
    return {
        "time": change.time,
        "old": change.old.value,
        "new": change.new.value,
        "score": change.score,
        "reason": change.reason,
        "who": change.who,
        "evidence": change.evidence,
    }
