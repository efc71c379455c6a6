"""The plots abuse teams use, drawn server-side with matplotlib as inline SVG.

- detections over time: spam (black) and viruses (red);
- failures per hour for one sender around its outbreak;
- spamminess against hours of activity, every sender in the window;
- direct port-25 packets per hour over the four-hour blocks active, for a
  sender the flow records found sending straight to the Internet.

Figures are built with the object API (no pyplot, no global figure state) and
the SVG keeps text as text (`svg.fonttype = none`), never parses `$...$` as
math (a HELO may contain dollars), and gets a per-figure id salt so several
SVGs can share one HTML page without clashing ids.
"""

from __future__ import annotations

import io
import re
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import matplotlib
from matplotlib import dates as mdates
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from extrusion.report.model import Category, Report, SenderActivity, SenderReport
from extrusion.scoring.kinds import Kind

SPAM_COLOUR = "black"
VIRUS_COLOUR = "#d62728"  # red
MISCONFIGURED_COLOUR = "#1f77b4"  # blue
QUIET_COLOUR = "#b0b0b0"
OPERATOR_COLOUR = "#9467bd"  # purple: pinned by an operator, no weighty evidence
DELIVERED_COLOUR = "#c7c7c7"

HOUR = 3600
DAY = 86400
# Up to this span the detection plot counts per hour, beyond it per day.
HOURLY_SPAN_LIMIT = 3 * DAY
# Hours shown either side of a sender's detection.
OUTBREAK_MARGIN_HOURS = 12
# Above this many points the scatter is embedded as a bitmap inside the SVG,
# so a report over 100,000 senders stays a page a browser opens quickly.
RASTER_POINTS = 2000
TITLE_CHARS = 60
FIGSIZE = (8.0, 3.2)
# The talk's blocks of the day (extrusion.flows).
BLOCK_HOURS = 4

_ID_REF = re.compile(r'(\bid="|href="#|url\(#)([^"\)]+)')
_RC: dict[str, Any] = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 9}
# rcParams are process-global; serialise the rendering that reads them.
_LOCK = threading.Lock()

_CATEGORY_COLOUR = {
    Category.SPAM: SPAM_COLOUR,
    Category.VIRUS: VIRUS_COLOUR,
    Category.MISCONFIGURED: MISCONFIGURED_COLOUR,
    Category.OPERATOR: OPERATOR_COLOUR,
}


def _to_svg(fig: Figure, salt: str) -> str:
    buf = io.StringIO()
    rc: Any = {**_RC, "svg.hashsalt": salt}
    with _LOCK, matplotlib.rc_context(rc):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    # Inline SVG in HTML takes the <svg> element alone, without XML prolog or DOCTYPE.
    svg = svg[svg.index("<svg") :]
    # matplotlib numbers ids per figure (patch_1, ...); on a page of several
    # figures they would collide, so each figure's ids and references get its prefix.
    return _ID_REF.sub(lambda m: f"{m.group(1)}{salt}-{m.group(2)}", svg)


def _new_figure() -> tuple[Figure, Any]:
    rc: Any = _RC
    with _LOCK, matplotlib.rc_context(rc):
        fig = Figure(figsize=FIGSIZE, layout="constrained")
        ax = fig.add_subplot()
    return fig, ax


def _short(text: str) -> str:
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def _dates(times: Sequence[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in times]


def _date_axis(ax: Any, tz: tzinfo) -> None:
    # matplotlib.dates has no annotations for these two.
    dates: Any = mdates
    locator = dates.AutoDateLocator(tz=tz)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=tz))


def _legend(ax: Any, handles: list[Any] | None = None) -> None:
    # Outside the axes, on the right, so it never hides a bar.
    kwargs: dict[str, Any] = {"handles": handles} if handles else {}
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **kwargs)


def _empty(ax: Any, words: str) -> None:
    ax.text(0.5, 0.5, words, transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def detections_svg(report: Report, tz: tzinfo = UTC) -> str:
    """Senders first flagged per hour (or day), spam in black and viruses in red."""
    fig, ax = _new_figure()
    detected = [
        (t, s.category)
        for s in (*report.senders, *report.misconfigured)
        # A pin is an operator's decision, not a detection.
        if (t := s.detected_at) is not None
        and s.category not in (Category.MISCONFIGURED, Category.OPERATOR)
    ]
    ax.set_title("Detection of spam (black) and viruses (red)")
    if not detected:
        _empty(ax, "no senders flagged in this period")
        return _to_svg(fig, "detections")
    start = report.since if report.since is not None else min(t for t, _ in detected)
    step = HOUR if report.until - start <= HOURLY_SPAN_LIMIT else DAY
    spam: Counter[float] = Counter()
    virus: Counter[float] = Counter()
    for t, category in detected:
        (virus if category is Category.VIRUS else spam)[t - t % step] += 1
    bins = sorted(set(spam) | set(virus))
    width = step / DAY * 0.9  # bar width in matplotlib date units (days)
    xs = _dates([b + step / 2 for b in bins])
    spam_counts = [spam[b] for b in bins]
    ax.bar(xs, spam_counts, width=width, color=SPAM_COLOUR, label="spam")
    ax.bar(xs, [virus[b] for b in bins], width=width, bottom=spam_counts, color=VIRUS_COLOUR,
           label="virus")
    ax.set_ylabel(f"senders flagged per {'hour' if step == HOUR else 'day'}")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlim(*_dates([start - start % step, report.until]))
    _legend(ax)
    _date_axis(ax, tz)
    return _to_svg(fig, "detections")


def outbreak_svg(sender: SenderReport, index: int, tz: tzinfo = UTC) -> str:
    """Failed and delivered recipients per hour for one sender, around its detection."""
    fig, ax = _new_figure()
    ax.set_title(f"Failures per hour: {_short(sender.key)}")
    buckets = list(sender.hourly)
    centre = sender.detected_at
    if centre is not None and buckets:
        lo = centre - OUTBREAK_MARGIN_HOURS * HOUR
        hi = centre + OUTBREAK_MARGIN_HOURS * HOUR
        buckets = [b for b in buckets if lo <= b.start <= hi] or buckets
    if not buckets:
        _empty(ax, "no delivery outcomes logged")
        return _to_svg(fig, f"outbreak-{index}")
    xs = _dates([b.start + HOUR / 2 for b in buckets])
    failed = [b.failed for b in buckets]
    colour = _CATEGORY_COLOUR[sender.category]
    ax.bar(xs, failed, width=HOUR / DAY * 0.9, color=colour, label="failed")
    ax.bar(xs, [b.delivered for b in buckets], width=HOUR / DAY * 0.9, bottom=failed,
           color=DELIVERED_COLOUR, label="delivered")
    if centre is not None:
        ax.axvline(datetime.fromtimestamp(centre, UTC), color=MISCONFIGURED_COLOUR,
                   linestyle="--", linewidth=1, label="flagged")
    ax.set_ylabel("recipients per hour")
    _legend(ax)
    _date_axis(ax, tz)
    return _to_svg(fig, f"outbreak-{index}")


def _colour(a: SenderActivity) -> str:
    if a.category is None:
        return QUIET_COLOUR
    return _CATEGORY_COLOUR[a.category]


def spamminess_svg(activity: Sequence[SenderActivity]) -> str:
    """Share of failed recipients against hours active, one point per sender."""
    fig, ax = _new_figure()
    ax.set_title("Spamminess vs hours of activity")
    points = [a for a in activity if a.recipients]
    if not points:
        _empty(ax, "no activity in this period")
        return _to_svg(fig, "spamminess")
    # Quiet senders first so flagged ones are drawn on top.
    points.sort(key=lambda a: a.category is not None)
    raster = len(points) > RASTER_POINTS
    ax.scatter(
        [a.hours_active for a in points],
        [a.spamminess for a in points],
        c=[_colour(a) for a in points],
        s=22,
        alpha=0.7,
        linewidths=0,
        rasterized=raster,
    )
    legend = [
        Line2D([], [], marker="o", linestyle="", color=colour, label=label)
        for label, colour in (
            ("spam", SPAM_COLOUR),
            ("virus", VIRUS_COLOUR),
            ("misconfigured", MISCONFIGURED_COLOUR),
            ("not flagged", QUIET_COLOUR),
            *((("operator's decision", OPERATOR_COLOUR),)
              if any(a.category is Category.OPERATOR for a in points) else ()),
        )
    ]
    _legend(ax, legend)
    ax.set_xlabel("hours active")
    ax.xaxis.get_major_locator().set_params(integer=True)  # whole hours, also for one sender
    ax.set_ylabel("share of recipients failed")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(left=0)
    return _to_svg(fig, "spamminess")


def direct_svg(sender: SenderReport, index: int, tz: tzinfo = UTC) -> str:
    """Direct port-25 packets per hour (sampled, scaled by the rate) over the four-hour
    blocks it was active in, for a sender the flow records found ("" if they did not)."""
    finding = next((f for f in sender.findings if f.kind == Kind.DIRECT_TO_MX), None)
    hourly = finding.evidence.get("hourly") if finding is not None else None
    if not isinstance(hourly, list):
        return ""
    hours = [(int(h), int(p)) for h, p in (x for x in hourly if isinstance(x, list)
                                           and len(x) == 2)]
    if not hours:
        return ""
    fig, ax = _new_figure()
    ax.set_title(f"Direct port-25 packets per hour: {_short(sender.key)}")
    # The talk's measure: hours active against the four-hour blocks active.
    for block in sorted({h // BLOCK_HOURS for h, _ in hours}):
        lo, hi = _dates([block * BLOCK_HOURS * HOUR, (block + 1) * BLOCK_HOURS * HOUR])
        ax.axvspan(lo, hi, color=QUIET_COLOUR, alpha=0.35, linewidth=0)
    ax.bar(_dates([h * HOUR + HOUR / 2 for h, _ in hours]), [p for _, p in hours],
           width=HOUR / DAY * 0.9, color=_CATEGORY_COLOUR[sender.category],
           label="packets (estimated)")
    ax.set_ylabel("packets per hour")
    _legend(ax, [Line2D([], [], color=_CATEGORY_COLOUR[sender.category], linewidth=6,
                        label="packets (estimated)"),
                 Line2D([], [], color=QUIET_COLOUR, linewidth=6, alpha=0.5,
                        label="four-hour block active")])
    _date_axis(ax, tz)
    return _to_svg(fig, f"direct-{index}")
