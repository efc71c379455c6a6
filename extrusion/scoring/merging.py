"""How a sender's stored row absorbs one process's delta: the rule every host and
process sharing a store follows, so that their evidence adds up and none wipes
out another's (pure; the store calls it inside the write transaction)."""

from __future__ import annotations

from typing import Any

from extrusion.scoring.rows import PIN_CLEAR, PIN_SET, SenderDelta, SenderRow, decay


def merge_sender(
    row: SenderRow | None, delta: SenderDelta, half_life: float, changed_at: float
) -> SenderRow:
    """The stored row after applying one process's delta (pure; the store calls it)."""
    if row is None or row.version == 0:
        first = delta.first_seen if delta.first_seen is not None else delta.time
        row = SenderRow(
            key=delta.key, score_time=delta.time, first_seen=first, last_seen=delta.time,
            state_since=delta.time,
        )
    now = max(row.score_time, delta.time)
    base = 0.0 if delta.reset_score else decay(row.score, now - row.score_time, half_life)
    score = base + decay(delta.score_delta, now - delta.time, half_life)
    pinned, pinned_by, pinned_reason = row.pinned, row.pinned_by, row.pinned_reason
    if delta.pin == PIN_SET:
        pinned, pinned_by, pinned_reason = delta.pinned, delta.pinned_by, delta.pinned_reason
    elif delta.pin == PIN_CLEAR:
        pinned = pinned_by = pinned_reason = None
    # The constructor, not dataclasses.replace(): this runs for every sender of a flush.
    return SenderRow(
        key=row.key,
        cls=row.cls if delta.cls is None else delta.cls,
        state=row.state if delta.state is None else delta.state,
        score=max(score, 0.0),
        score_time=now,
        first_seen=row.first_seen if delta.first_seen is None
        else min(row.first_seen, delta.first_seen),
        last_seen=max(row.last_seen, delta.time),
        state_since=row.state_since if delta.state is None
        else (delta.state_since if delta.state_since is not None else delta.time),
        pinned=pinned,
        pinned_by=pinned_by,
        pinned_reason=pinned_reason,
        findings=row.findings if delta.findings is None
        else merge_findings(row.findings, delta.findings, replace=delta.reset_score,
                            added=delta.added),
        version=row.version + 1,
        changed_at=changed_at,
    )


def merge_findings(stored: dict[str, Any], mine: dict[str, Any], *,
                   replace: bool = False,
                   added: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """The stored findings after one process wrote its own, merged per finding name.

    Processes sharing a store find different things about one sender (the milter
    its HELOs, the log feed its failures): each writes what it knows, and none may
    wipe out the others'. For a name both know, the entry noted last wins (a copy
    adopted from the store and written back later is older than the original's
    next update). Findings noted before an operator's release (the `released`
    entry) are stale news from a process that had not heard of it yet. `replace`:
    the writer released the sender itself, so its findings are all there is.

    With `added` (what the writer noted since its last write, per name), counts and
    weights add up instead: hosts sharing a store each see part of a bot's failures,
    and the stored count is all of them, not the last writer's share.
    """
    if replace or not stored:
        return mine
    merged = dict(stored)
    released = merged.get(_RELEASED)
    since = float(released.get("time", 0.0)) if isinstance(released, dict) else None
    for name, entry in mine.items():
        if not isinstance(entry, dict):
            merged[name] = entry
            continue
        if since is not None and name != _RELEASED and _noted(entry)[0] < since:
            continue
        old = merged.get(name)
        if isinstance(old, dict) and added is not None and name in added:
            merged[name] = _summed(old, entry, added[name])
        elif not isinstance(old, dict) or _noted(entry) >= _noted(old):
            merged[name] = entry
    return merged


def _summed(old: dict[str, Any], entry: dict[str, Any], add: list[float]) -> dict[str, Any]:
    """One finding two processes noted: the latest entry's fields, the counts added up."""
    out = dict(entry if _noted(entry) >= _noted(old) else old)
    try:
        out["count"] = int(old.get("count", 0) or 0) + int(add[0])
        out["weight"] = round(float(old.get("weight", 0.0) or 0.0) + float(add[1]), 3)
        if "first" in old and "first" in entry:
            out["first"] = min(float(old["first"]), float(entry["first"]))
    except (TypeError, ValueError, IndexError):
        return out  # a malformed stored entry: the newer one as it is
    examples = [*(old.get("examples") or ()), *(entry.get("examples") or ())]
    if examples and all(isinstance(e, str) for e in examples):
        out["examples"] = list(dict.fromkeys(examples))[:MAX_FINDING_EXAMPLES]
    return out


_RELEASED = "released"  # memory.RELEASED (memory imports this module)
MAX_FINDING_EXAMPLES = 5  # memory.MAX_EXAMPLES


def _noted(entry: dict[str, Any]) -> tuple[float, float]:
    """When a finding was last noted (a release: when it happened), then how often."""
    try:
        return (float(entry.get("last", entry.get("time", 0.0)) or 0.0),
                float(entry.get("count", 0) or 0))
    except (TypeError, ValueError):
        return (0.0, 0.0)
