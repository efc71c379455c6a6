"""Prometheus metrics of the policy daemon, in a registry of its own.

Each `Metrics` owns a private `CollectorRegistry`, so several daemons in one
test process never collide and nothing leaks into the client's global one.
`GET /metrics` renders exactly this registry.

The three metrics bumped on every policy request (requests, decisions, decision
latency) are plain numbers turned into samples only when /metrics is read: a
prometheus_client counter takes a lock and checks its arguments on each `inc()`,
which cost more per request than parsing it. Only the reactor thread bumps them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from extrusion.scoring.events import State

#: Decision latency buckets (seconds): answers come from memory, so the
#: interesting range is tens of microseconds to a few milliseconds.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Cell:
    """One label value's count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class LabelledCount(Collector):
    """A counter with one label, exported as `<name>_total{<label>="..."}`."""

    def __init__(self, name: str, doc: str, label: str, registry: CollectorRegistry) -> None:
        self.name, self.doc, self.label = name, doc, label
        self.cells: dict[str, Cell] = {}
        registry.register(self)

    def labels(self, value: str) -> Cell:
        """The cell for a label value (bind it once, outside the hot path)."""
        cell = self.cells.get(value)
        if cell is None:
            cell = self.cells[value] = Cell()
        return cell

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=[self.label])
        for value, cell in list(self.cells.items()):
            family.add_metric([value], cell.value)
        yield family


class Latency(Collector):
    """A histogram of seconds: a count per bucket, made cumulative when read."""

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...],
                 registry: CollectorRegistry) -> None:
        self.name, self.doc, self.bounds = name, doc, buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        registry.register(self)

    def observe(self, seconds: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= seconds.
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def collect(self) -> Iterator[Metric]:
        running, buckets = 0, []
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            buckets.append((bound, float(running)))
        yield HistogramMetricFamily(self.name, self.doc, buckets=buckets, sum_value=self.sum)


class Metrics:
    """Every counter the daemon exports; label values are bound once for the hot path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._define_policy(self.registry)
        self._define_store(self.registry)
        self._define_engine(self.registry)
        # Pre-bound children: a label lookup per request costs more than the increment.
        self.decision_by_action = {a: self.decisions.labels(a) for a in _ACTION_LABELS}
        for state in State:
            self.senders.labels(state.value)
        for result in ("read", "parsed", "ignored", "garbled", "dropped"):
            self.log_lines.labels(result)

    def _define_policy(self, r: CollectorRegistry) -> None:
        """What the policy protocol sees: requests, answers, clients."""
        self.requests = LabelledCount(
            "extrusion_policy_requests", "Policy requests answered, by protocol_state.",
            "state", r,
        )
        self.decisions = LabelledCount(
            "extrusion_policy_decisions", "Policy answers by action sent to Postfix.",
            "action", r,
        )
        self.latency = Latency(
            "extrusion_policy_decision_seconds", "Time to answer one policy request.",
            LATENCY_BUCKETS, r,
        )
        self.bad_input = Counter(
            "extrusion_policy_bad_input", "Connections closed for bad input, by kind.",
            ["kind"], registry=r,
        )
        self.connections = Gauge(
            "extrusion_policy_connections", "Open policy client connections.", registry=r
        )
        self.refused_clients = Counter(
            "extrusion_policy_refused_clients", "Connections refused by allowed_clients.",
            registry=r,
        )

    def _define_store(self, r: CollectorRegistry) -> None:
        """The store and the log feed that fills it."""
        self.store_errors = Counter(
            "extrusion_store_errors",
            "Engine or store operations that failed (answered with the default action, "
            "or retried later).",
            ["operation"], registry=r,
        )
        self.quarantined = Counter(
            "extrusion_store_quarantined_rows",
            "Rows the store refused for what they hold (retrying could not help), set "
            "aside in quarantine.jsonl in the spool directory so the rest was written.",
            registry=r,
        )
        self.log_lines = Counter(
            "extrusion_maillog_lines",
            "MTA log lines: read, parsed (gave events), ignored (of no interest), "
            "garbled (unreadable, skipped), dropped (arrived while the store was closed "
            "and the waiting buffer was full).",
            ["result"], registry=r,
        )

    def _define_engine(self, r: CollectorRegistry) -> None:
        """The engine's senders, its queue actions and whether it is up."""
        self.senders = Gauge(
            "extrusion_senders", "Senders known to the store, by state.", ["state"], registry=r
        )
        self.senders_in_memory = Gauge(
            "extrusion_engine_senders_in_memory",
            "Senders the engine holds in memory (capped by [scoring] max_senders).",
            registry=r,
        )
        self.senders_evicted = Counter(
            "extrusion_engine_senders_evicted",
            "Senders forgotten from memory to stay under [scoring] max_senders (the store "
            "keeps them; they come back on their next sight).",
            registry=r,
        )
        self.senders_over_cap = Counter(
            "extrusion_engine_senders_over_cap",
            "Times the engine stayed above [scoring] max_senders because every sender left "
            "had to be kept (not ok, pinned, on probation or not yet written).",
            registry=r,
        )
        self.queue_actions = Counter(
            "extrusion_queue_actions", "postsuper runs on queued mail, by verb and result.",
            ["verb", "result"], registry=r,
        )
        self.engine_up = Gauge(
            "extrusion_engine_up", "1 when the engine and its store are open.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


# Label values: the access(5) verb we answered with (DUNNO, DEFER_IF_PERMIT, HOLD,
# REJECT) plus "default" for answers given without the engine.
_ACTION_LABELS = ("DUNNO", "DEFER_IF_PERMIT", "HOLD", "REJECT", "default")
