"""The plain-text report, with each sender's mail in the classic extrusion-detection form.

    HELO = lrhnow.usa.net
    2007-05-19 23:11:22 kwntefsqhi@usa.net Size=8339
    !!! 0930456496@yahoo.com
    -> cy.tung@msa.hinet.net
    and 31 more valid destinations

`!!!` a failed destination, `->` a delivered one, `...` one with no final
outcome yet; a `HELO =` line above a message whose HELO is suspect. Failures
are listed first because they are the evidence; long lists are cut.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, tzinfo

from extrusion.report.model import (
    Category,
    Finding,
    MessageRecord,
    Report,
    ReportOutcome,
    SenderReport,
)
from extrusion.report.times import classic, zone_label

# How many destinations of one message are listed before "and N more ...":
# the talk's listings show six.
DEFAULT_MAX_DESTINATIONS = 6

MARK = {ReportOutcome.FAILED: "!!! ", ReportOutcome.DELIVERED: "-> ", ReportOutcome.PENDING: "... "}
MORE = {
    ReportOutcome.FAILED: ("failure", "failures"),
    ReportOutcome.PENDING: ("destination without an outcome yet",
                            "destinations without an outcome yet"),
    ReportOutcome.DELIVERED: ("valid destination", "valid destinations"),
}
# Failures are the evidence, so they get the room first.
ORDER = (ReportOutcome.FAILED, ReportOutcome.PENDING, ReportOutcome.DELIVERED)

MISCONFIGURED_TITLE = "Misconfigured: rejection daemons (automatic replies sent without <>)"


def envelope(address: str) -> str:
    return address or "<>"


def message_lines(
    msg: MessageRecord, tz: tzinfo = UTC, max_destinations: int = DEFAULT_MAX_DESTINATIONS
) -> list[str]:
    """One message in the classic form (no trailing blank line)."""
    lines = []
    if msg.helo_suspect:
        lines.append(f"HELO = {msg.helo}")
    lines.append(f"{classic(msg.time, tz)} {envelope(msg.envelope_from)} Size={msg.size}")
    groups: dict[ReportOutcome, list[str]] = {d: [] for d in ORDER}
    for rcpt in msg.recipients:
        groups[rcpt.delivery].append(rcpt.address)
    room = max_destinations
    hidden: list[tuple[ReportOutcome, int]] = []
    for delivery in ORDER:
        shown = groups[delivery][:room]
        room -= len(shown)
        lines.extend(MARK[delivery] + address for address in shown)
        if len(groups[delivery]) > len(shown):
            hidden.append((delivery, len(groups[delivery]) - len(shown)))
    lines.extend(f"and {n} more {MORE[delivery][n != 1]}" for delivery, n in hidden)
    return lines


def more_messages(n: int) -> str:
    return f"and {n} more {'message' if n == 1 else 'messages'} not listed"


def _evidence(finding: Finding) -> str:
    parts = []
    for key, value in finding.evidence.items():
        if value == [] or value == "":
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        parts.append(f"{key}={value}")
    return "; ".join(parts)


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def decay_words(half_life: float | None) -> str:
    """How to read a score beside its evidence: the score decays, the weights do not."""
    if half_life is None:
        return ""
    if half_life <= 0:
        return "Scores do not decay ([scoring] half_life_seconds = 0)."
    return (
        f"Scores are as of the end of the period and halve every {duration(half_life)} "
        "without new evidence ([scoring] half_life_seconds); evidence weights are as "
        "added at the time."
    )


def duration(seconds: float) -> str:
    """A half-life in the unit an operator would say it in."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds:,.0f} seconds"


def state_words(s: SenderReport) -> str:
    """`state=ok worst=throttled`: a released bot still shows what it reached."""
    worst = s.worst
    return f"state={s.state}" + (f" worst={worst}" if worst is not s.state else "")


def finding_line(f: Finding) -> str:
    """A finding as data: its weight when it added one, else a fact without a number."""
    weight = f" +{f.score:.1f}" if f.weighs else ""
    return f"  - {f.kind}{weight}: {_evidence(f)}".rstrip(": ")


def header_line(s: SenderReport, tz: tzinfo = UTC) -> str:
    c = s.counts
    return (
        f"=== {s.key} customer={s.customer or '-'} {state_words(s)} score={s.score:.1f} "
        f"first={classic(s.first_seen, tz)} last={classic(s.last_seen, tz)} "
        f"messages={c.messages} recipients={c.recipients} failed={c.failed} "
        f"delivered={c.delivered} pending={c.pending}"
    )


def sender_lines(
    s: SenderReport, tz: tzinfo = UTC, max_destinations: int = DEFAULT_MAX_DESTINATIONS
) -> list[str]:
    """A sender's whole section: header, reasons, findings, audit trail, messages."""
    lines = [header_line(s, tz)]
    if s.category not in (Category.SPAM, Category.OPERATOR):
        lines.append(f"Looks like: {s.category}")
    if s.pin is not None:
        lines.append(f"Operator action: {s.pin.words}")
    if s.reasons:
        lines.append("Reasons:")
        lines.extend(f"  - {reason}" for reason in s.reasons)
    if s.findings:
        # The sentences are the reasons above; this is the data behind them.
        lines.append("Evidence (weights as added at the time, before decay):")
        lines.extend(finding_line(f) for f in s.findings)
    if s.changes:
        lines.append("State changes:")
        lines.extend(
            f"  {classic(ch.time, tz)} {ch.old} -> {ch.new} (score {ch.score:.1f}, "
            f"by {ch.who}): {ch.reason}"
            for ch in s.changes
        )
    for msg in s.messages:
        lines.append("")
        lines.extend(message_lines(msg, tz, max_destinations))
    if s.messages_omitted:
        lines.append("")
        lines.append(more_messages(s.messages_omitted))
    return lines


def _section(
    title: str, senders: Iterable[SenderReport], tz: tzinfo, max_destinations: int
) -> list[str]:
    lines = [title, "=" * len(title)]
    for s in senders:
        lines.append("")
        lines.extend(sender_lines(s, tz, max_destinations))
    return lines


def render_text(
    report: Report, tz: tzinfo = UTC, max_destinations: int = DEFAULT_MAX_DESTINATIONS
) -> str:
    """The whole report as text (ends with a newline)."""
    since = classic(report.since, tz) if report.since is not None else "the beginning"
    lines = [
        f"extrusion report: {plural(len(report.senders), 'flagged sender', 'flagged senders')}, "
        f"{len(report.misconfigured)} misconfigured",
        f"from {since} to {classic(report.until, tz)} ({zone_label(tz, report.until)}), "
        f"generated {classic(report.generated_at, tz)}",
    ]
    if report.source:
        lines.append(f"source: {report.source}")
    if decay := decay_words(report.half_life):
        lines.append(decay)
    if not report.senders and not report.misconfigured:
        lines += ["", "No flagged or misconfigured senders in this period."]
    if report.senders:
        lines.append("")
        lines += _section("Flagged senders", report.senders, tz, max_destinations)
    if report.misconfigured:
        lines.append("")
        lines += _section(MISCONFIGURED_TITLE, report.misconfigured, tz, max_destinations)
    return "\n".join(lines) + "\n"
