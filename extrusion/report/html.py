"""The report as one self-contained HTML page an operator opens from disk.

No external assets and no script at all: styles are inline, plots are inline
SVG drawn on the server, and a Content-Security-Policy forbids anything else,
so a hostile string that slipped through escaping still could not load or run
anything. Every user-controlled string goes through `html.escape`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, tzinfo
from html import escape

from extrusion.report import plots
from extrusion.report.model import Category, Finding, Report, ReportOutcome, SenderReport
from extrusion.report.text import (
    DEFAULT_MAX_DESTINATIONS,
    MARK,
    MISCONFIGURED_TITLE,
    decay_words,
    message_lines,
    more_messages,
    plural,
)
from extrusion.report.times import classic, zone_label

# Senders that get their own failures-per-hour plot (highest scores first);
# each plot costs tens of milliseconds and a few tens of kB.
DEFAULT_PLOT_SENDERS = 12

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
td { overflow-wrap: anywhere; max-width: 40em; }
td.n { white-space: nowrap; overflow-wrap: normal; }
.key { white-space: nowrap; overflow-wrap: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.virus td.cat { color: #d62728; font-weight: bold; }
.state-held, .state-blocked { font-weight: bold; }
figure { margin: 1em 0; } svg { max-width: 100%; height: auto; }
pre.classic { background: #f7f7f7; padding: 0.6em; white-space: pre-wrap;
               overflow-wrap: anywhere; }
pre .fail { color: #b00000; } pre .helo { color: #8a4b00; }
.meta { color: #555; }
.pin { color: #1f4e9c; font-weight: bold; }
td.why { min-width: 16em; }
"""

_FAIL = MARK[ReportOutcome.FAILED]
_HELO = "HELO = "


def _classic_block(s: SenderReport, tz: tzinfo, max_destinations: int) -> str:
    out = []
    for msg in s.messages:
        for line in message_lines(msg, tz, max_destinations):
            if line.startswith(_FAIL):
                out.append(f'<span class="fail">{escape(line)}</span>')
            elif line.startswith(_HELO):
                out.append(f'<span class="helo">{escape(line)}</span>')
            else:
                out.append(escape(line))
        out.append("")
    if s.messages_omitted:
        out.append(more_messages(s.messages_omitted))
    return '<pre class="classic">' + "\n".join(out) + "</pre>"


def _state_html(s: SenderReport) -> str:
    """The state now and, when higher, the worst one reached: a released bot shows both."""
    worst = s.worst
    shown = f'<span class="state-{s.state}">{s.state}</span>'
    if worst is not s.state:
        shown += f' <span class="worst state-{worst}">(worst {worst})</span>'
    return shown


def _looks_like(s: SenderReport) -> str:
    if s.category is Category.OPERATOR:
        return "operator's decision"
    return str(s.category)


def _why(s: SenderReport) -> str:
    """The reasons cell: an operator's pin first, as their action, then the evidence's words."""
    items = [escape(r) for r in s.reasons]
    if s.pin is not None:
        items.insert(0, f'<span class="pin">operator: {escape(s.pin.words)}</span>')
    return "<br>".join(items)


def _summary_table(senders: tuple[SenderReport, ...], tz: tzinfo, prefix: str) -> str:
    rows = []
    for i, s in enumerate(senders):
        c = s.counts
        rows.append(
            f'<tr class="{s.category}"><td class="key"><a href="#{prefix}-{i}">'
            f"{escape(s.key)}</a></td>"
            f'<td>{escape(s.customer)}</td><td class="n">{_state_html(s)}</td>'
            f'<td class="num n">{s.score:.1f}</td><td class="n cat">{_looks_like(s)}</td>'
            f'<td class="n">{classic(s.first_seen, tz)}</td>'
            f'<td class="n">{classic(s.last_seen, tz)}</td>'
            f'<td class="num">{c.messages}</td><td class="num">{c.failed}</td>'
            f'<td class="num">{c.delivered}</td><td class="why">{_why(s)}</td></tr>'
        )
    head = (
        "<tr><th>sender</th><th>customer</th><th>state</th><th>score</th><th>looks like</th>"
        "<th>first seen</th><th>last seen</th><th>messages</th><th>failed</th>"
        "<th>delivered</th><th>reasons</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _finding_row(f: Finding) -> str:
    # A finding that added nothing is a fact: no "+0.0" beside it.
    weight = f"+{f.score:.1f}" if f.weighs else "–"
    return (
        f"<tr><td>{escape(f.kind)}</td><td class=\"num\">{weight}</td>"
        f"<td>{escape(f.summary)}</td><td>{_evidence_html(f.evidence)}</td></tr>"
    )


def _sender_section(
    s: SenderReport, anchor: str, plot: str, tz: tzinfo, max_destinations: int
) -> str:
    c = s.counts
    worst = f" (worst {s.worst})" if s.worst is not s.state else ""
    parts = [
        f'<section id="{anchor}"><h2><span class="key">{escape(s.key)}</span> — '
        f"{s.state}{worst}, score {s.score:.1f}</h2>",
        f'<p class="meta">customer {escape(s.customer) or "–"} · looks like {_looks_like(s)} · '
        f"first seen {classic(s.first_seen, tz)} · last seen {classic(s.last_seen, tz)} · "
        f"{plural(c.messages, 'message', 'messages')}, "
        f"{plural(c.recipients, 'recipient', 'recipients')}: {c.failed} failed, "
        f"{c.delivered} delivered, {c.pending} pending</p>",
    ]
    if s.pin is not None:
        parts.append(f'<p class="pin">Operator action: {escape(s.pin.words)}</p>')
    if s.reasons:
        items = "".join(f"<li>{escape(r)}</li>" for r in s.reasons)
        parts.append(f"<ul class=\"reasons\">{items}</ul>")
    if s.findings:
        rows = "".join(_finding_row(f) for f in s.findings)
        parts.append(
            "<table class=\"findings\"><tr><th>finding</th><th>weight at the time</th>"
            f"<th>what</th><th>evidence</th></tr>{rows}</table>"
        )
    if s.changes:
        rows = "".join(
            f'<tr><td class="n">{classic(ch.time, tz)}</td><td class="n">{ch.old} → {ch.new}</td>'
            f"<td class=\"num\">{ch.score:.1f}</td><td>{escape(ch.who)}</td>"
            f"<td class=\"note\">{escape(ch.reason)}</td></tr>"
            for ch in s.changes
        )
        parts.append(
            "<table class=\"changes\"><tr><th>when</th><th>state</th><th>score</th><th>by</th>"
            f"<th>why</th></tr>{rows}</table>"
        )
    if plot:
        parts.append(f'<figure class="plot outbreak">{plot}</figure>')
    parts.append(_classic_block(s, tz, max_destinations))
    parts.append("</section>")
    return "\n".join(parts)


def _evidence_html(evidence: Mapping[str, object]) -> str:
    items = []
    for key, value in evidence.items():
        if value == [] or value == "":
            continue  # "examples=" with nothing after it says nothing
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        items.append(f"{escape(key)}={escape(shown)}")
    return "<br>".join(items)


def render_html(
    report: Report,
    tz: tzinfo = UTC,
    max_destinations: int = DEFAULT_MAX_DESTINATIONS,
    plot_senders: int = DEFAULT_PLOT_SENDERS,
) -> str:
    """The whole page as a string."""
    zone = zone_label(tz, report.until)
    since = classic(report.since, tz) if report.since is not None else "the beginning"
    viruses = sum(1 for s in report.senders if s.category is Category.VIRUS)
    ranked = sorted(range(len(report.senders)), key=lambda i: -report.senders[i].score)
    plotted = set(ranked[:plot_senders])
    body = [
        "<h1>extrusion report</h1>",
        f'<p class="meta">From {since} to {classic(report.until, tz)} ({escape(zone)}), '
        f"generated {classic(report.generated_at, tz)}"
        + (f" · source {escape(report.source)}" if report.source else "")
        + "</p>",
        f"<p>{plural(len(report.senders), 'flagged sender', 'flagged senders')} "
        f"({viruses} {'looks' if viruses == 1 else 'look'} like "
        f"{'a virus' if viruses == 1 else 'viruses'}), "
        f"{len(report.misconfigured)} misconfigured.</p>",
        *([f'<p class="meta decay">{escape(d)}</p>'] if (d := decay_words(report.half_life))
          else []),
        f'<figure class="plot detections">{plots.detections_svg(report, tz)}</figure>',
        f'<figure class="plot spamminess">{plots.spamminess_svg(report.activity)}</figure>',
    ]
    if report.senders:
        body.append("<h2>Flagged senders</h2>")
        body.append(_summary_table(report.senders, tz, "sender"))
        for i, s in enumerate(report.senders):
            plot = plots.outbreak_svg(s, i, tz) + plots.direct_svg(s, i, tz) if (
                i in plotted) else ""
            body.append(_sender_section(s, f"sender-{i}", plot, tz, max_destinations))
    if report.misconfigured:
        body.append(f"<h2>{escape(MISCONFIGURED_TITLE)}</h2>")
        body.append(_summary_table(report.misconfigured, tz, "misconfigured"))
        for i, s in enumerate(report.misconfigured):
            body.append(_sender_section(s, f"misconfigured-{i}", "", tz, max_destinations))
    if not report.senders and not report.misconfigured:
        body.append("<p>No flagged or misconfigured senders in this period.</p>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>extrusion report {classic(report.until, tz)}</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
