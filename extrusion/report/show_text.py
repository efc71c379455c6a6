"""`extrusion show KEY` as text: the dict of `show.sender_view` for a person at a terminal.

Findings and messages come from the report's model, cleaned when it was
built (`report.clean`); what comes straight from the store (the key, the
pin, the audit trail's reasons) is cleaned here, so no escape sequence
reaches the terminal. Times are in the report's zone.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from extrusion.report.clean import clean
from extrusion.report.times import classic

REPLY_CHARS = 120  # of a remote reply, on a recipient's line


def _when(t: float | None, tz: tzinfo) -> str:
    return classic(t, tz) if t else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "never (no decay configured)"
    if seconds <= 0:
        return "now"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"in {minutes} min"
    return f"in {minutes / 60:.1f} h"


def _limit(n: int) -> str:
    return f"{n:,}" if n else "no limit"


def _value(v: object) -> str:
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _evidence(e: dict[str, Any]) -> str:
    # Already cleaned by the report's model: a second clean would double the escapes.
    return ", ".join(f"{k}={_value(v)}" for k, v in e.items())


def render_show(view: dict[str, Any], tz: tzinfo) -> str:
    """The sender in sections: state, decay, pin, evidence, limits, messages, audit trail."""
    d, w, lim = view["decay"], view["worst"], view["limits"]
    out = [
        f"sender   {clean(view['sender'])}",
        f"state    {view['state']} since {_when(view['state_since'], tz)}   "
        f"worst {w['state']} (since {_when(w['since'], tz)})",
        f"score    {d['score_now']:.1f}, {d['score_in_1h']:.1f} in 1 h "
        f"(half-life {d['half_life_seconds']:g} s); below watch ({d['watch_score']:g}) "
        f"{_duration(d['below_watch_in_seconds'])}, ok again (below {d['ok_score']:g}) "
        f"{_duration(d['ok_again_in_seconds'])}",
        f"seen     {_when(view['first_seen'], tz)} .. {_when(view['last_seen'], tz)}   "
        f"class {clean(view['class'])}",
    ]
    if view["pinned"]:
        out.append(f"pinned   {view['pinned']} by {clean(view['pinned_by'] or '?')}: "
                   f"{clean(view['pinned_reason'] or '')}")
    c = view["counts"]
    out.append(f"counts   {c['messages']:,} messages, {c['recipients']:,} recipients: "
               f"{c['delivered']:,} delivered, {c['failed']:,} failed, {c['pending']:,} pending")
    out += ["", "evidence"]
    for f in view["evidence"] or [{"kind": "-", "score": 0.0, "summary": "none", "evidence": {}}]:
        out.append(f"  {f['score']:+7.1f}  {f['kind']}: {f['summary']}")
        if f["evidence"]:
            out.append(f"           {_evidence(f['evidence'])}")
    out += ["", f"limits   [{clean(lim['class'])}]"
            + ("" if lim["applies"] else f" not applied: {lim['why_not']}")]
    used = lim["used"]
    out.append(f"  messages   {used['messages_last_hour']:,} / {_limit(lim['messages_per_hour'])}"
               f" this hour, {used['messages_last_day']:,} / {_limit(lim['messages_per_day'])}"
               " today")
    out.append(f"  recipients {used['recipients_last_hour']:,} / "
               f"{_limit(lim['recipients_per_hour'])} this hour, "
               f"{used['recipients_last_day']:,} / {_limit(lim['recipients_per_day'])} today")
    if lim["list_allowance"]:
        out.append("  (a recent list post: the engine may allow [limits.list] instead)")
    out += ["", f"messages (latest {len(view['messages'])})"]
    for m in view["messages"]:
        out.append(f"  {m['time']} {m['queue_id'] or '-'} "
                   f"from <{m['envelope_from']}> size={m['size']}"
                   + (f" HELO={m['helo']}" + (" (suspect)" if m["helo_suspect"] else "")
                      if m["helo"] else ""))
        for r in m["recipients"]:
            mark = {"delivered": "->", "failed": "!!!"}.get(r["outcome"], "..")
            detail = " ".join(x for x in (r["status"], r["dsn"], r["reply"][:REPLY_CHARS]) if x)
            out.append(f"    {mark:3} {r['address']}  {detail}")
    omitted = f", {view['audit_omitted']} older not shown" if view["audit_omitted"] else ""
    out += ["", f"audit trail ({len(view['audit'])}{omitted})"]
    for a in view["audit"]:
        out.append(f"  {_when(a['time'], tz)}  {a['old']} -> {a['new']}  score {a['score']:.1f}"
                   f"  by {clean(a['who'])}: {clean(a['reason'])}")
    return "\n".join(out) + "\n"
