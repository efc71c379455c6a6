"""Operator commands that work directly on the store (`db upgrade`, `senders`, pins).

They need no running daemon: the daemons pick up what these write within
`store.refresh_seconds` (the pin, the state, and for a release the
forgotten evidence), and every action lands in the audit trail with who
and why.
"""

from __future__ import annotations

import json
import time

from extrusion.config import Config
from extrusion.scoring.events import OperatorVerb, State, StateChange
from extrusion.scoring.kinds import Kind
from extrusion.scoring.memory import RELEASED, top_finding
from extrusion.scoring.operator import OperatorError, operator_request
from extrusion.scoring.overrides import OverrideSet, SenderMap
from extrusion.scoring.rows import PIN_CLEAR, PIN_SET, Batch, SenderDelta, SenderRow
from extrusion.scoring.senderjson import sender_json
from extrusion.scoring.state import PIN_STATES, Thresholds, next_state
from extrusion.scoring.store import Store, open_store, state_change_row
from extrusion.scoring.wording import phrase


class AdminError(Exception):
    """Bad operator input, phrased for the terminal; `status` is the exit status if set."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def db_upgrade(cfg: Config) -> str:
    """Create or migrate the store; returns a line saying where it stands."""
    store = Store(cfg.store.url, busy_timeout_ms=cfg.store.busy_timeout_ms, create=False)
    try:
        before = store.revision()
        after = store.upgrade()
    finally:
        store.close()
    if before == after:
        return f"store is up to date (revision {after})"
    return f"store upgraded from revision {before or 'none'} to {after}"


def list_senders(cfg: Config, state: str | None = None, *, as_json: bool = False,
                 now: float | None = None) -> list[str]:
    """Lines to print: one per sender, highest score first."""
    if state is not None and state not in {s.value for s in State}:
        raise AdminError(f"unknown state {state!r} (one of {', '.join(s.value for s in State)})")
    now = time.time() if now is None else now
    hl = cfg.scoring.half_life_seconds
    with open_store(cfg) as store:
        rows = store.senders(state)
    rows.sort(key=lambda r: (-r.score_at(now, hl), r.key))
    if as_json:
        return [json.dumps(sender_json(r, hl, now), sort_keys=True) for r in rows]
    lines = [f"{'SENDER':40} {'STATE':9} {'SCORE':>8} {'PINNED':8} REASON"]
    for r in rows:
        lines.append(
            f"{r.key:40} {r.state:9} {r.score_at(now, hl):8.1f} {r.pinned or '-':8} "
            f"{_top_reason(r)}"
        )
    return lines


def operator_action(cfg: Config, verb: str, sender: str, why: str, who: str,
                    now: float | None = None) -> StateChange:
    """Pin (allow/hold/block) or release a sender in the store; audited. Checked as the
    API checks it (`scoring.operator`); applied to the store, where the daemons pick it
    up within `store.refresh_seconds`."""
    now = time.time() if now is None else now
    try:
        action = operator_request(verb, sender, why, who, now,
                                  SenderMap(cfg.customers).operator_key)
    except OperatorError as exc:
        raise AdminError(str(exc), exc.status) from None
    v, sender, who, why = action.verb, action.sender, action.who, action.why
    hl = cfg.scoring.half_life_seconds
    with open_store(cfg) as store:
        row = store.sender(sender) or SenderRow(key=sender, first_seen=now, last_seen=now,
                                                state_since=now, score_time=now)
        old = State(row.state)
        delta = SenderDelta(key=sender, time=now, first_seen=row.first_seen)
        if v is OperatorVerb.RELEASE:
            delta.reset_score = True
            delta.pin = PIN_CLEAR
            delta.findings = {RELEASED: {"by": who, "time": now}}
            # A standing config override still pins the sender after a release.
            override = OverrideSet(cfg.overrides).match(sender)
            new = PIN_STATES.get(override.action if override is not None else "", State.OK)
            score = 0.0
        elif v.value in PIN_STATES:
            delta.pin, delta.pinned, delta.pinned_by, delta.pinned_reason = (
                PIN_SET, v.value, who, why)
            new = PIN_STATES[v.value]
            score = row.score_at(now, hl)
        else:  # monitor: record everything, enforce nothing; the state follows the score
            delta.pin, delta.pinned, delta.pinned_by, delta.pinned_reason = (
                PIN_SET, v.value, who, why)
            score = row.score_at(now, hl)
            new = next_state(old, score, Thresholds.from_config(cfg.scoring))
        delta.state, delta.state_since = new.value, now if new is not old else row.state_since
        change = StateChange(time=now, sender=sender, old=old, new=new, score=round(score, 3),
                             reason=f"{v.value} by {who}: {why}", who=who,
                             evidence={"via": "cli", "score": round(score, 3)})
        batch = Batch()
        batch.state_changes.append(state_change_row(change))
        batch.add_sender(delta, hl)
        store.write_batch(batch, hl)
    return change


def _top_reason(r: SenderRow) -> str:
    if r.pinned:
        return f"{r.pinned} by {r.pinned_by}: {r.pinned_reason}"
    if (r.findings or {}).get(Kind.MISCONFIGURED, {}).get("rejection_daemon"):
        return "misconfigured: rejection daemon"
    return phrase(top_finding(r.findings or {}), "")
