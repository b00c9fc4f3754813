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

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"dagster_taskiq_{name}", doc, labels, registry=registry)

        self.received = counter("messages_received", "Step messages received from the broker.")
        self.refused = counter(
            "messages_refused",
            "Messages not run, by reason: duplicate (another worker holds the step), "
            "completed_already, bad_payload, not_a_step, unsigned, unknown_key, bad_signature, "
            "other_queue, recycling (given back by a worker about to recycle).",
            ("reason",),
        )
        self.claimed = counter("steps_claimed", "Steps claimed (and so run) here.")
        self.completed = counter("steps_completed", "Steps that succeeded here.")
        self.failed = counter(
            "steps_failed",
            "Steps that failed here (their op raised, timed out, or was interrupted).",
        )
        self.released = counter(
            "steps_released",
            "Steps given back unfinished: the worker stopping, or its claim lost while it ran.",
        )
        self.heartbeat_failures = counter(
            "heartbeat_failures",
            "Heartbeats (store lease and message visibility) that failed; retried at the next.",
        )
        self.lease_losses = counter(
            "lease_losses",
            "Steps whose claim another worker took while they ran here (their events dropped).",
        )
        self.in_flight = Gauge(
            "dagster_taskiq_steps_in_flight", "Steps running here now.", registry=registry
        )
        self.queue_depth = Gauge(
            "dagster_taskiq_queue_depth",
            "Messages waiting in each queue this worker reads, sampled every 15 s at most.",
            ["queue"],
            registry=registry,
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
