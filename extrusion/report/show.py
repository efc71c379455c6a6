"""`extrusion show KEY`: one sender whole, as one JSON-ready dict (`show --json` prints it).

What it holds: the stored state, score and pin (`senderjson.sender_json`,
the shape of `senders --json` and the API), where the score is heading
(decay), the worst state in the audit trail, the findings in words with
their evidence, the rate limits in force with what the store counted in
their windows, the latest messages with each recipient's outcome, and the
audit trail. Read with the report's own queries (`load.sender_report`);
the text form (`show_text`) is rendered from this same dict.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from extrusion.config import Config
from extrusion.report.jsonfmt import finding_dict, message_dict
from extrusion.report.load import Query, sender_report
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.kinds import Kind
from extrusion.scoring.limits import DAY, HOUR, budget
from extrusion.scoring.overrides import OverrideSet, SenderMap
from extrusion.scoring.rows import SenderRow, decay
from extrusion.scoring.senderjson import audit_json, sender_json
from extrusion.scoring.store import Store

SCHEMA_VERSION = 1
DEFAULT_MESSAGES = 20  # messages listed unless --messages says otherwise
MAX_MESSAGES = 1000  # --messages ceiling: the command reads no unbounded listing
# Projections of a score that never gets there (half-life 0, or an absurd ratio).
NEVER = None


def _seconds_until_below(score: float, threshold: float, half_life: float) -> float | None:
    """Seconds of decay until `score` is below `threshold`; 0 if it is already; None: never."""
    if score < threshold:
        return 0.0
    if half_life <= 0.0 or threshold <= 0.0:
        return NEVER
    return half_life * math.log2(score / threshold)


def decay_view(row: SenderRow, cfg: Config, now: float) -> dict[str, Any]:
    """Where the score is heading with no new evidence ([scoring] half_life_seconds)."""
    s = cfg.scoring
    score = row.score_at(now, s.half_life_seconds)
    below_watch = _seconds_until_below(score, s.watch_score, s.half_life_seconds)
    ok_again = _seconds_until_below(score, s.watch_score * s.release_ratio, s.half_life_seconds)
    return {
        "half_life_seconds": s.half_life_seconds,
        "score_now": round(score, 3),
        "score_in_1h": round(decay(score, HOUR, s.half_life_seconds), 3),
        "watch_score": s.watch_score,
        "below_watch_in_seconds": None if below_watch is None else round(below_watch),
        "below_watch_at": None if below_watch is None else now + below_watch,
        # A watched sender returns to ok below watch_score x release_ratio (hysteresis).
        "ok_score": round(s.watch_score * s.release_ratio, 3),
        "ok_again_in_seconds": None if ok_again is None else round(ok_again),
    }


def worst_state(row: SenderRow, trail: list[StateChange]) -> dict[str, Any]:
    """The highest state the sender has been in, by the audit trail, and when it got there."""
    worst, since = State(row.state), row.state_since
    for ch in trail:
        if ch.new.rank > worst.rank:
            worst, since = ch.new, ch.time
    return {"state": worst.value, "since": since}


def limits_view(cfg: Config, row: SenderRow, store: Store, now: float,
                client_addr: str = "") -> dict[str, Any]:
    """The budget the engine holds this sender to, and what the store counted in its windows.

    The class is chosen as the engine chooses it (an `[[overrides]]` action
    "limits", else its customer's class). A mailing list's allowance depends
    on the outcome of its latest list-sized post, which only the running
    engine knows: `list_allowance` says whether one may be in force.
    """
    state = State(row.state)
    override = OverrideSet(cfg.overrides).match(row.key, client_addr)
    cls = override.limits if override is not None and override.action == "limits" else ""
    cls = cls or SenderMap(cfg.customers).limits_class(row.key)
    name, limits = budget(cfg.limits, cls, state)
    lists = (row.findings or {}).get(Kind.MAILING_LISTS)
    last_list = float(lists.get("last", 0.0)) if isinstance(lists, dict) else 0.0
    counted = {
        f"{what}_last_{span}": int(sum(store.counters(row.key, what, now - seconds).values()))
        for what in ("messages", "recipients") for span, seconds in (("hour", HOUR), ("day", DAY))
    }
    applies = state not in (State.HELD, State.BLOCKED)
    return {
        "class": name,
        "applies": applies,
        "why_not": "" if applies else (
            "held: its mail goes to the hold queue" if state is State.HELD
            else "blocked: its mail is refused"),
        **dataclasses.asdict(limits),
        "used": counted,
        "list_allowance": (state is State.OK and override is None
                           and now - last_list < cfg.scoring.window_seconds),
    }


def sender_view(store: Store, cfg: Config, key: str, now: float,
                messages: int = DEFAULT_MESSAGES) -> dict[str, Any] | None:
    """Everything about one sender (None: the store has no such sender)."""
    row = store.sender(key)
    if row is None:
        return None
    trail = store.state_changes(key)
    hl = cfg.scoring.half_life_seconds
    wanted = max(0, min(messages, MAX_MESSAGES))
    # The report's Query lists all messages for 0: ask for at least one, show `wanted`.
    q = Query(until=now, since=None, sender=key, max_messages=max(wanted, 1),
              half_life=hl, own_domains=cfg.general.own_domains)
    report = sender_report(store, row, trail, q)
    listed = report.messages[len(report.messages) - wanted:] if wanted else ()
    last_addr = report.messages[-1].client_addr if report.messages else ""
    return {
        "version": SCHEMA_VERSION,
        "now": now,
        **sender_json(row, hl, now),
        "worst": worst_state(row, trail),
        "decay": decay_view(row, cfg, now),
        "evidence": [finding_dict(f) for f in report.findings],
        "limits": limits_view(cfg, row, store, now, last_addr),
        "counts": dataclasses.asdict(report.counts),
        "messages": [message_dict(m) for m in listed],
        **audit_json(trail),
    }
