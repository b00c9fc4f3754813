"""The worker's Prometheus metrics (``dagster-taskiq worker --metrics-port``), each in one
registry of the worker's own: what ``docs/operations.md`` explains, metric by metric."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from dagster_taskiq.retrying import retry_counts

__all__ = ["WorkerMetrics"]

_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400)
_HANDOFF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics:
    """The counters, gauges and histograms one worker keeps (``registry`` is its own)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.received = Counter(
            "dagster_taskiq_messages_received",
            "Step messages received from the broker.",
            registry=registry,
        )
        self.refused = Counter(
            "dagster_taskiq_messages_refused",
            "Messages not run, by reason: duplicate (another worker holds the step), "
            "completed_already, bad_payload, not_a_step, unsigned, unknown_key, bad_signature, "
            "other_queue, recycling (given back by a worker about to recycle).",
            ["reason"],
            registry=registry,
        )
        self.claimed = Counter(
            "dagster_taskiq_steps_claimed", "Steps claimed (and so run) here.", registry=registry
        )
        self.completed = Counter(
            "dagster_taskiq_steps_completed", "Steps that succeeded here.", registry=registry
        )
        self.failed = Counter(
            "dagster_taskiq_steps_failed",
            "Steps that failed here (their op raised, timed out, or was interrupted).",
            registry=registry,
        )
        self.released = Counter(
            "dagster_taskiq_steps_released",
            "Steps given back unfinished: the worker stopping, or its claim lost while it ran.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "dagster_taskiq_steps_in_flight", "Steps running here now.", registry=registry
        )
        self.duration = Histogram(
            "dagster_taskiq_step_duration_seconds",
            "A step's run time on the worker, claim to outcome.",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.handoff = Histogram(
            "dagster_taskiq_handoff_seconds",
            "From the executor making the step's message to this worker claiming it: time in "
            "the queue plus delivery (the two hosts' clocks).",
            buckets=_HANDOFF_BUCKETS,
            registry=registry,
        )
        self.heartbeat_failures = Counter(
            "dagster_taskiq_heartbeat_failures",
            "Heartbeats (store lease and message visibility) that failed; retried at the next.",
            registry=registry,
        )
        self.lease_losses = Counter(
            "dagster_taskiq_lease_losses",
            "Steps whose claim another worker took while they ran here (their events dropped).",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "dagster_taskiq_queue_depth",
            "Messages waiting in each queue this worker reads, sampled every 15 s at most.",
            ["queue"],
            registry=registry,
        )
        registry.register(_Retries())

    def refuse(self, reason: str) -> None:
        self.refused.labels(reason).inc()


class _Retries(Collector):
    """``dagster_taskiq_retries_total{service}``: this process's retries of broker and store
    calls (``dagster_taskiq.retrying``), read at each scrape."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "dagster_taskiq_retries",
            "Calls to the broker or the store retried after a transient error, by service.",
            labels=["service"],
        )
        for service, count in sorted(retry_counts().items()):
            family.add_metric([service], count)
        yield family
