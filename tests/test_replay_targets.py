"""benchmarks/replay.py's closing lines: issue 17's replay targets beside pflogsumm."""

from __future__ import annotations

from benchmarks.replay import target_lines


def test_each_build_is_judged_against_pflogsumm() -> None:
    wall = {"parse only (LogFeed)": 2.0, "extrusion replay (full)": 5.06,
            "extrusion replay (compiled)": 3.66, "pflogsumm": 8.63}
    cpu = {"parse only (LogFeed)": 2.0, "extrusion replay (full)": 9.06,
           "extrusion replay (compiled)": 6.34, "pflogsumm": 8.62}
    rss = {"parse only (LogFeed)": 0.0, "extrusion replay (full)": 144.0,
           "extrusion replay (compiled)": 142.0, "pflogsumm": 230.0}
    lines = target_lines(wall, cpu, rss, 1_613_999)
    assert lines[1] == "issue 17 targets, beside pflogsumm:"
    assert len(lines) == 4  # the parse-only run is no replay
    full, compiled = lines[2], lines[3]
    assert "extrusion replay (full): lines/s 1.71x (target >= 2.0x): NOT met" in full
    assert "CPU 1.05x (target <= 1x): NOT met" in full
    assert "lines/s 2.36x (target >= 2.0x): met" in compiled
    assert "CPU 0.74x (target <= 1x): met" in compiled
    assert compiled.endswith("peak RSS 142 against 230 MB: met")


def test_a_log_smaller_than_the_targets_one_is_said_to_be() -> None:
    wall = {"extrusion replay (full)": 1.58, "pflogsumm": 2.03}
    cpu = {"extrusion replay (full)": 2.67, "pflogsumm": 2.03}
    rss = {"extrusion replay (full)": 76.0, "pflogsumm": 69.0}
    lines = target_lines(wall, cpu, rss, 384_864)
    assert lines[1] == ("issue 17 targets, beside pflogsumm (set on a log of 1,500,000 "
                        "lines or more; this one has 384,864):")
    assert lines[2].endswith("peak RSS 76 against 69 MB: NOT met")


def test_nothing_to_judge_without_pflogsumm_or_a_replay() -> None:
    assert target_lines({"extrusion replay (full)": 5.0}, {"extrusion replay (full)": 9.0},
                        {"extrusion replay (full)": 144.0}, 2_000_000) == []
    assert target_lines({"pflogsumm": 8.0}, {"pflogsumm": 8.0}, {"pflogsumm": 230.0},
                        2_000_000) == []
