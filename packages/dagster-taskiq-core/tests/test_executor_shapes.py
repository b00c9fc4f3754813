"""The job-shape matrix: each job through taskiq workers gives what in_process_executor gives."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from taskiq import AsyncBroker

from dagster_taskiq import SqlIdempotencyStore, TaskState
from dagster_taskiq_sqs import SqsSettings
from dagster_taskiq_testing import InMemorySqs, InMemorySqsBroker
from support import job_shapes
from support.executor_harness import (
    InProcessWorkers,
    injected,
    materializations,
    run_job,
    step_outcomes,
)
from support.thread_broker import ThreadQueueBroker

PARTITION_TAGS = {"dagster/partition": "b"}

# name -> (job, run config, tags, nodes whose outputs are compared)
SHAPES: dict[str, tuple[Any, dict[str, Any] | None, dict[str, str] | None, tuple[str, ...]]] = {
    "chain": (job_shapes.chain, None, None, ("add_one_5",)),
    "diamond": (job_shapes.diamond, None, None, ("add",)),
    "fan_out_fan_in": (job_shapes.fan_out, None, None, ("total",)),
    "dynamic": (job_shapes.dynamic, None, None, ("square", "total")),
    "retry_policy": (job_shapes.retries, None, None, ("flaky", "add_one")),
    "failure_skips_downstream": (job_shapes.failing, None, None, ("independent",)),
    "config_and_resource": (
        job_shapes.config_and_resource,
        job_shapes.CONFIG_RUN_CONFIG,
        None,
        ("configured", "add_one"),
    ),
    "partitioned_assets_with_check": (
        job_shapes.partitioned_assets,
        None,
        PARTITION_TAGS,
        (),
    ),
}


def in_process_reference(job_fn: Any, run_config: Any, tags: Any, nodes: tuple[str, ...]) -> Any:
    job_def = job_fn() if job_fn is job_shapes.partitioned_assets else job_fn
    with DagsterInstance.ephemeral() as instance:
        result = job_def.execute_in_process(
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
            partition_key=(tags or {}).get("dagster/partition"),
        )
        outcomes = step_outcomes(result.all_events)
        outputs = {
            node: result.output_for_node(node)
            for node in nodes
            if outcomes.get(node) == "success" or any(k.startswith(node + "[") for k in outcomes)
        }
        return result.success, outcomes, outputs, materializations(result.all_events)


def broker_factory(kind: str) -> Callable[[], AsyncBroker]:
    """A factory of brokers that share one queue: the executor's and each worker's."""
    if kind == "thread":
        broker = ThreadQueueBroker()
        return lambda: broker
    sqs = InMemorySqs()
    settings = SqsSettings(
        queue_name=f"steps-{uuid.uuid4().hex[:8]}.fifo",
        create_queues_if_missing=True,
        wait_time_seconds=1,
    )
    return lambda: InMemorySqsBroker(settings, sqs=sqs)


@pytest.mark.parametrize("backend", ["thread", "stub"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shape_matches_in_process_executor(
    shape: str, backend: str, tmp_path: Path, ledger: Path
) -> None:
    job_fn, run_config, tags, nodes = SHAPES[shape]
    expected_success, expected_outcomes, expected_outputs, expected_assets = in_process_reference(
        job_fn, run_config, tags, nodes
    )
    (tmp_path / "home").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "home"))
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    brokers = broker_factory(backend)
    with injected(brokers(), store), InProcessWorkers(brokers, store, count=2):
        report = run_job(
            job_fn, instance, store, run_config=run_config, tags=tags, output_nodes=nodes
        )

    assert report.success == expected_success
    assert report.outcomes == expected_outcomes
    assert report.outputs == expected_outputs
    assert report.materializations == expected_assets
    # Exactly one recorded outcome per executed step, and one Dagster success per step.
    executed = {k for k, v in report.outcomes.items() if v != "skipped"}
    assert {r.step_key for r in report.records} == executed
    for record in report.records:
        assert record.state.is_final, record
        wanted = (
            TaskState.COMPLETED
            if report.outcomes[record.step_key] == "success"
            else TaskState.FAILED
        )
        assert record.state is wanted, record
    assert all(n == 1 for n in report.success_events.values()), report.success_events
    # Each op body ran once per Dagster try (retries are separate tries).
    runs = Counter(job_shapes.read_ledger(str(ledger), report.run_id))
    if shape == "retry_policy":
        assert runs["flaky"] == 3
    else:
        assert all(count == 1 for count in runs.values()), runs
    assert set(runs) == executed - {"upper_upper_is_upper"}  # the check does not record
    instance.dispose()
    store.close()
