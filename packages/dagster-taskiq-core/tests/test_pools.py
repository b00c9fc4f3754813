"""Dagster's pools (``pool=`` on ops, the instance's pool limits) hold across runs and workers:
the run process claims a pool slot before it sends a step, the slot is freed with the step's
outcome, and a cancelled run gives its slots back."""

from __future__ import annotations

import threading

from dagster import DagsterInstance

from dagster_taskiq import SqlIdempotencyStore
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from support import feature_jobs
from support.executor_harness import (
    RunReport,
    run_job,
    workers_on_a_queue,
)

LOCATIONS = CodeLocations([CodeLocation(module="support.feature_jobs")])
LIMIT = 2


def test_a_pool_limit_holds_across_concurrent_runs_on_several_workers(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    instance.event_log_storage.set_concurrency_slots(feature_jobs.POOL, LIMIT)
    feature_jobs.POOLED.reset()
    reports: list[RunReport] = []
    with workers_on_a_queue(store, LOCATIONS, count=2, concurrency=4):
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
