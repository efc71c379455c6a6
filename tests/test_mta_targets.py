"""benchmarks/mta.py's closing lines: issue 17's targets, each against its C floor."""

from __future__ import annotations

from benchmarks.mta import target_lines


def test_a_run_without_a_target_and_its_floor_prints_no_target() -> None:
    assert target_lines({"bare": 700.0, "policyd": 600.0}, {"bare": 0.0, "policyd": 0.3}) == []
    assert target_lines({"c-both": 470.0}, {"c-both": 0.56}) == []


def test_the_shipped_wiring_met_and_the_policy_daemon_not() -> None:
    ingress = {"serve-maps": 656.8, "c-both": 471.2, "policyd": 596.9, "c-policy": 758.7}
    cpu = {"serve-maps": 0.40, "c-both": 0.56, "policyd": 0.37, "c-policy": 0.06}
    lines = target_lines(ingress, cpu)
    assert lines[0].startswith("issue 17 targets")
    assert "serve-maps / c-both ingress: 1.39 (target >= 0.9): met" in lines[1]
    assert "serve-maps CPU: 0.400 ms a message (target <= 0.8): met" in lines[2]
    assert "policyd / c-policy ingress: 0.79 (target >= 0.95): NOT met" in lines[3]
    assert "policyd CPU: 0.370 ms a message (target <= 0.15): NOT met" in lines[4]
    assert len(lines) == 5  # no Twisted floor ran


def test_the_twisted_floors_are_printed_beside_the_policy_daemon() -> None:
    ingress = {"policyd": 720.0, "c-policy": 750.0, "py-policy": 700.0, "py-policy-join": 690.0}
    cpu = {"policyd": 0.15, "c-policy": 0.06, "py-policy": 0.13, "py-policy-join": 0.17}
    lines = target_lines(ingress, cpu)
    assert "policyd / c-policy ingress: 0.96 (target >= 0.95): met" in lines[1]
    assert "policyd CPU: 0.150 ms a message (target <= 0.15): met" in lines[2]
    assert lines[3].strip() == ("beside it py-policy, a Twisted server answering DUNNO "
                                "unread: 0.93 of c-policy, 0.130 ms a message")
    assert lines[4].strip() == ("beside it py-policy-join, the same, also following, "
                                "parsing and joining the log: 0.92 of c-policy, 0.170 ms "
                                "a message")
