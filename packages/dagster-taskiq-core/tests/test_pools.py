"""Dagster's pools (``pool=`` on ops, the instance's pool limits) hold across runs and workers:
the run process claims a pool slot before it sends a step, the slot is freed with the step's
outcome, and a cancelled run gives its slots back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from dagster_taskiq import ExecutorSettings, SqlIdempotencyStore
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from dagster_taskiq.worker import StepRunner, WorkerOptions
from support import feature_jobs
from support.executor_harness import InProcessWorkers, RunReport, injected, run_job
from support.thread_broker import ThreadQueueBroker

LOCATIONS = CodeLocations([CodeLocation(module="support.feature_jobs")])
LIMIT = 2


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        instance.event_log_storage.set_concurrency_slots(feature_jobs.POOL, LIMIT)
        yield instance


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlIdempotencyStore]:
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.close()


def test_a_pool_limit_holds_across_concurrent_runs_on_several_workers(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    feature_jobs.POOLED.reset()
    broker = ThreadQueueBroker()
    reports: list[RunReport] = []
    settings = ExecutorSettings(backend="injected", poll_interval=0.2)
    with (
        injected(broker, store, settings),
        InProcessWorkers(
            lambda: broker,
            store,
            count=2,
            options=WorkerOptions(concurrency=4, visibility_timeout=30),
            runner_factory=lambda: StepRunner(LOCATIONS),
        ),
    ):
        runs = [
            threading.Thread(
                target=lambda: reports.append(run_job(feature_jobs.pooled_fan_out, instance, store))
            )
            for _ in range(3)
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join(120)

    assert len(reports) == 3
    assert all(report.success for report in reports)
    # 12 pooled steps, 8 worker slots: only the pool held them to its limit.
    assert feature_jobs.POOLED.most == LIMIT
    info = instance.event_log_storage.get_concurrency_info(feature_jobs.POOL)
    assert info.active_slot_count == 0  # every slot given back
    assert info.pending_step_count == 0
