"""The ``dagster_taskiq`` fixture: a user's job through taskiq_executor, in-process, no network."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dagster import DagsterEventType

import harness_jobs
from dagster_taskiq import TaskState
from dagster_taskiq_testing import InProcessTaskIQ


def test_a_users_job_runs_on_in_process_workers(
    dagster_taskiq: Callable[..., InProcessTaskIQ],
) -> None:
    with dagster_taskiq(modules=["harness_jobs"]) as taskiq:
        result = taskiq.execute(harness_jobs.summing)
        assert result.success
        records = {r.step_key: r for r in taskiq.records(result.run_id)}
        assert taskiq.processed >= 3  # numbers, total's failed try, total's retry
    assert records["numbers"].state is TaskState.COMPLETED
    assert records["total"].state is TaskState.COMPLETED
    assert records["total"].retry_number == 1
    retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert [e.step_key for e in retries] == ["total"]


def test_workers_refuse_code_they_were_not_given(
    dagster_taskiq: Callable[..., InProcessTaskIQ],
) -> None:
    with dagster_taskiq(modules=["some.other.project"], workers=1) as taskiq:
        result = taskiq.execute(harness_jobs.summing)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "refusing job 'summing'" in failure.step_failure_data.error.message


def test_code_locations_are_required() -> None:
    with pytest.raises(ValueError, match="name the code the workers serve"):
        InProcessTaskIQ()
