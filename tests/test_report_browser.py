"""The HTML report opened in real headless Chromium: it draws its plots and logs no errors.

Chromium prints every console message (script errors, CSP refusals) to
stderr with --enable-logging; the page has no script at all, so any CONSOLE
line is a failure. A control page with a broken script shows the check bites.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from extrusion.report.html import render_html
from extrusion_dev import sample

from .test_report_escaping import SCRIPT, hostile_report

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")
WINDOW = (1200, 2400)
VIRUS_RED = (0xD6, 0x27, 0x28)


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        reason = "chromium is not installed (scripts/ensure-debs chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + " (CI=true: the browser test is required)")
        pytest.skip(reason)
    return CHROMIUM


def run_chromium(binary: str, page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Load `page`; returns stdout and the console messages Chromium logged."""
    proc = subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [m.group(1) for line in proc.stderr.splitlines() if (m := CONSOLE.search(line))]
    return proc.stdout, console


def screenshot(binary: str, page: Path, tmp: Path) -> tuple[Path, list[str]]:
    shot = tmp / f"{page.stem}.png"
    _, console = run_chromium(
        binary, page, tmp / f"profile-{page.stem}-shot",
        f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
    )
    assert shot.is_file(), "no screenshot written"
    return shot, console


def dump_dom(binary: str, page: Path, tmp: Path) -> tuple[str, list[str]]:
    return run_chromium(binary, page, tmp / f"profile-{page.stem}-dom", "--dump-dom")


def pixels(path: Path) -> Any:
    """The screenshot as an (height, width, 3) array of RGB values."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def count_near(px: Any, colour: tuple[int, int, int], tol: int = 12) -> int:
    import numpy as np

    return int(np.all(np.abs(px - np.array(colour)) <= tol, axis=-1).sum())


def count_inked(px: Any) -> int:
    """Pixels that are clearly not white background."""
    return int((px.sum(axis=-1) < 600).sum())


def test_console_check_catches_a_script_error(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>undefined_function()</script>")
    _, console = dump_dom(chromium, page, tmp_path)
    assert any("undefined_function is not defined" in m for m in console), console


def test_report_page_renders_its_plots_without_errors(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(sample.classic_scenario()), encoding="utf-8")

    dom, console = dump_dom(chromium, page, tmp_path)
    assert console == []
    # The plots are in the live DOM as SVG, each with drawn paths.
    figures = re.findall(r'<figure class="plot (\w+)"><svg\b', dom)
    assert sorted(figures) == ["detections", "outbreak", "outbreak", "spamminess"]
    assert dom.count("<path") > 50
    assert "Detection of spam (black) and viruses (red)" in dom
    assert "<script" not in dom

    shot, console = screenshot(chromium, page, tmp_path)
    assert console == []
    px = pixels(shot)
    assert px.shape == (WINDOW[1], WINDOW[0], 3)
    inked = count_inked(px) / (WINDOW[0] * WINDOW[1])
    assert inked > 0.01, f"screenshot looks blank ({inked:.2%} non-white)"
    # The detection plot's bars: a black one (spam) and a red one (the worm).
    assert count_near(px, VIRUS_RED) > 500
    assert count_near(px, (0, 0, 0), 8) > 2000


def test_hostile_strings_stay_text_in_the_browser(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "hostile.html"
    page.write_text(render_html(hostile_report()), encoding="utf-8")
    dom, console = dump_dom(chromium, page, tmp_path)
    # No script ran and the CSP had nothing to refuse.
    assert console == []
    assert "<script" not in dom and "<img" not in dom
    # The hostile HELO is on the page as text, escaped again when the DOM was serialised.
    assert "HELO = &lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert SCRIPT not in dom
    shot, console = screenshot(chromium, page, tmp_path)
    assert console == []
    assert count_inked(pixels(shot)) > 1000


def test_a_big_scatter_is_embedded_as_a_bitmap_the_policy_allows(
    chromium: str, tmp_path: Path
) -> None:
    # Thousands of points are drawn into a PNG inside the SVG (a data: URL).
    report = sample.synthetic(messages=2000, per_sender=100, quiet_senders=3000)
    page = tmp_path / "big.html"
    page.write_text(render_html(report), encoding="utf-8")
    dom, console = dump_dom(chromium, page, tmp_path)
    assert console == []  # in particular, no Content-Security-Policy refusal
    assert re.search(r'<figure class="plot spamminess"><svg\b.*?<image\b[^>]*data:image/png',
                     dom, re.S)


# --- what confused an abuse desk, as the browser lays it out -----------------------------

# Counts the lines each sender key's text is laid out on (a range's boxes, by their top:
# a table cell alone is one box however its text wraps); a copy of the
# page without its policy runs it, the page itself stays scriptless.
MEASURE = """<script>
const lines = [...document.querySelectorAll('.key')].map(e => {
  const range = document.createRange();
  range.selectNodeContents(e);
  return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
});
document.body.setAttribute('data-key-lines', lines.join(','));
</script>"""
NARROW = 520  # px: narrower than an IPv6 key in the summary table's first column


def abuse_desk_pages(tmp: Path) -> tuple[Path, Path]:
    """The full report and the bot's own page, read from a real SQLite store."""
    from extrusion.scoring.store import Store

    from .test_report_abuse_desk import BOT, report, write

    store = Store(f"sqlite:///{tmp / 'extrusion.db'}")
    try:
        write(store)
        full, one = report(store), report(store, sender=BOT)
    finally:
        store.close()
    pages = tmp / "full.html", tmp / "bot.html"
    pages[0].write_text(render_html(full), encoding="utf-8")
    pages[1].write_text(render_html(one), encoding="utf-8")
    return pages


def test_abuse_desk_fixes_are_on_the_rendered_page(chromium: str, tmp_path: Path) -> None:
    from .test_report_abuse_desk import BOT, HOLD_NOTE

    full, one = abuse_desk_pages(tmp_path)
    dom, console = dump_dom(chromium, full, tmp_path)
    assert console == []
    assert "2 flagged senders (0 look like viruses)" in dom
    assert "halve every hour without new evidence" in dom
    assert "(worst held)" in dom
    assert "Operator action: pinned to held by alice: customer asked: ticket 4711" in dom
    assert "looks like operator's decision" in dom
    assert HOLD_NOTE in dom  # the audit note whole, to its last words
    assert "+0.0" not in dom and "spam_verdicts" not in dom

    dom, console = dump_dom(chromium, one, tmp_path)
    assert console == []
    assert "1 flagged sender (0 look like viruses)" in dom and "flagged senders" not in dom
    spamminess = re.search(r'<figure class="plot spamminess">(.*?)</figure>', dom, re.S)
    assert spamminess is not None
    assert "no activity in this period" not in spamminess.group(1)
    assert "hours active" in spamminess.group(1)  # axes drawn: there were points to plot
    assert BOT in dom

    # Screenshots to look at; the page itself, as an operator opens it.
    for page in (full, one):
        shot, console = screenshot(chromium, page, tmp_path)
        assert console == []
        assert count_inked(pixels(shot)) > 10_000


def test_ipv6_keys_are_not_wrapped_mid_address(chromium: str, tmp_path: Path) -> None:
    full, _ = abuse_desk_pages(tmp_path)
    measured = tmp_path / "measured.html"
    html = full.read_text(encoding="utf-8")
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    measured.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom, console = run_chromium(chromium, measured, tmp_path / "profile-measure",
                                "--dump-dom", f"--window-size={NARROW},1200")
    assert console == []
    found = re.search(r'data-key-lines="([\d,]*)"', dom)
    assert found is not None, "the measuring script did not run"
    lines = [int(n) for n in found.group(1).split(",")]
    # Every key: in the summary table and in its section heading; each on one line.
    assert len(lines) == 4 and lines == [1] * len(lines), lines
