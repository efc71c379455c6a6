"""The per-request metrics kept as plain numbers still render as Prometheus counters and
a histogram whose buckets are "less than or equal", cumulative, with +Inf last."""

from __future__ import annotations

from extrusion.policyd.metrics import LATENCY_BUCKETS, Metrics


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_counters_by_label() -> None:
    m = Metrics()
    rcpt = m.requests.labels("rcpt")
    for _ in range(3):
        rcpt.inc()
    m.decision_by_action["DEFER_IF_PERMIT"].inc()
    assert sample(m, "extrusion_policy_requests_total", state="rcpt") == 3
    assert sample(m, "extrusion_policy_decisions_total", action="DEFER_IF_PERMIT") == 1
    # Bound label values are exported at 0 before their first answer.
    assert sample(m, "extrusion_policy_decisions_total", action="HOLD") == 0
    assert m.requests.labels("rcpt") is rcpt  # one cell per label value


def test_latency_buckets_are_cumulative_and_inclusive() -> None:
    m = Metrics()
    first = LATENCY_BUCKETS[0]
    for seconds in (first, first * 1.5, 10.0):  # on a bound, above it, above them all
        m.latency.observe(seconds)
    name = "extrusion_policy_decision_seconds"
    assert sample(m, f"{name}_bucket", le=str(first)) == 1  # a value on the bound is in it
    assert sample(m, f"{name}_bucket", le=str(LATENCY_BUCKETS[1])) == 2
    assert sample(m, f"{name}_bucket", le=str(LATENCY_BUCKETS[-1])) == 2
    assert sample(m, f"{name}_bucket", le="+Inf") == 3
    assert sample(m, f"{name}_count") == 3
    assert sample(m, f"{name}_sum") == first + first * 1.5 + 10.0


def test_render_names_them_as_before() -> None:
    m = Metrics()
    m.requests.labels("end-of-message").inc()
    m.latency.observe(0.0002)
    text = m.render().decode()
    assert 'extrusion_policy_requests_total{state="end-of-message"} 1.0' in text
    assert "# TYPE extrusion_policy_decision_seconds histogram" in text
    assert 'extrusion_policy_decision_seconds_bucket{le="0.00025"} 1.0' in text
