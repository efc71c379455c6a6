"""The report as JSON for ticketing systems: the text report's content under stable keys.

The shape is versioned (`"version": 1`); keys are only ever added. Times are
ISO-8601 in UTC, like `replay --json`. Strings were cleaned when the report
was built, so the output is always valid UTF-8.
"""

from __future__ import annotations

import json
from typing import Any

from extrusion.report.model import (
    Finding,
    MessageRecord,
    Report,
    SenderActivity,
    SenderReport,
)
from extrusion.report.times import iso_or_none

SCHEMA_VERSION = 1


def _round(x: float) -> float:
    return round(x, 3)


def message_dict(m: MessageRecord) -> dict[str, Any]:
    return {
        "time": iso_or_none(m.time),
        "queue_id": m.queue_id,
        "mta": m.mta,
        "client_addr": m.client_addr,
        "envelope_from": m.envelope_from,
        "size": m.size,
        "helo": m.helo,
        "helo_suspect": m.helo_suspect,
        "recipients": [
            {
                "address": r.address,
                "outcome": str(r.delivery),
                "status": r.status,
                "dsn": r.dsn,
                "reply": r.reply,
                "time": iso_or_none(r.time),
            }
            for r in m.recipients
        ],
    }


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "kind": f.kind,
        "score": _round(f.score),
        "summary": f.summary,
        "evidence": dict(f.evidence),
        # False: a fact that added nothing to the score (its "score" is 0).
        "weighs": f.weighs,
    }


def sender_dict(s: SenderReport) -> dict[str, Any]:
    c = s.counts
    return {
        "sender": s.key,
        "customer": s.customer,
        "state": str(s.state),
        "score": _round(s.score),
        "category": str(s.category),
        "first_seen": iso_or_none(s.first_seen),
        "last_seen": iso_or_none(s.last_seen),
        "detected_at": iso_or_none(s.detected_at),
        "counts": {
            "messages": c.messages,
            "recipients": c.recipients,
            "delivered": c.delivered,
            "failed": c.failed,
            "pending": c.pending,
        },
        "reasons": list(s.reasons),
        "findings": [finding_dict(f) for f in s.findings],
        "state_changes": [
            {
                "time": iso_or_none(ch.time),
                "old": str(ch.old),
                "new": str(ch.new),
                "score": _round(ch.score),
                "reason": ch.reason,
                "who": ch.who,
            }
            for ch in s.changes
        ],
        "failures_per_hour": [
            {"hour": iso_or_none(b.start), "delivered": b.delivered, "failed": b.failed}
            for b in s.hourly
        ],
        "messages": [message_dict(m) for m in s.messages],
        "messages_omitted": s.messages_omitted,
        "worst_state": str(s.worst),
        "worst_state_at": iso_or_none(s.worst_at),
        # An operator's decision, apart from the evidence ("category" is "operator"
        # when nothing else weighs).
        "pin": None if s.pin is None else {
            "state": s.pin.state, "by": s.pin.by, "reason": s.pin.reason,
        },
    }


def activity_dict(a: SenderActivity) -> dict[str, Any]:
    return {
        "sender": a.key,
        "state": str(a.state),
        "messages": a.messages,
        "recipients": a.recipients,
        "failed": a.failed,
        "spamminess": _round(a.spamminess),
        "hours_active": a.hours_active,
        "blocks_active": a.blocks_active,
    }


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "generated_at": iso_or_none(report.generated_at),
        "since": iso_or_none(report.since),
        "until": iso_or_none(report.until),
        "source": report.source,
        "senders": [sender_dict(s) for s in report.senders],
        "misconfigured": [sender_dict(s) for s in report.misconfigured],
        "activity": [activity_dict(a) for a in report.activity],
        # Scores are decayed to "until" with this half-life; finding scores are not.
        "half_life_seconds": report.half_life,
    }


def render_json(report: Report, indent: int | None = None) -> str:
    """The report as one JSON document (ends with a newline).

    Compact by default: the indenting encoder is pure Python and ten times
    slower on a report of 100,000 messages (`jq .` pretty-prints for people).
    """
    return json.dumps(report_dict(report), indent=indent, ensure_ascii=False) + "\n"
