"""Each step's stdout/stderr reach the instance's compute logs under the step's log key, as the
UI reads them: on thread workers (several steps printing at once on one worker, each log holding
only its own lines) and with ``--isolation subprocess`` (a child process's output too)."""

from __future__ import annotations

import os

import pytest
from dagster import DagsterEventType, DagsterInstance

from dagster_taskiq import SqlIdempotencyStore
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from dagster_taskiq.worker import SubprocessStepRunner
from support import TESTS_DIR, feature_jobs
from support.executor_harness import (
    RunReport,
    run_job,
    workers_on_a_queue,
)

LOCATIONS = CodeLocations([CodeLocation(module="support.feature_jobs")])


def step_logs(instance: DagsterInstance, report: RunReport) -> dict[str, tuple[str, str]]:
    """step key -> (stdout, stderr), read as the UI reads them: through the log key of each
    step's LOGS_CAPTURED event and the instance's compute log manager."""
    logs = {}
    manager = instance.compute_log_manager
    for event in report.events:
        if event.event_type is not DagsterEventType.LOGS_CAPTURED:
            continue
        data = event.logs_captured_data
        (step_key,) = data.step_keys
        log_key = manager.build_log_key_for_run(report.run_id, data.file_key)
        assert manager.is_capture_complete(log_key)
        captured = manager.get_log_data(log_key)
        logs[step_key] = (
            (captured.stdout or b"").decode(),
            (captured.stderr or b"").decode(),
        )
    return logs


def test_steps_printing_at_once_on_one_thread_worker_each_get_their_own_log(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    with workers_on_a_queue(store, LOCATIONS, concurrency=2):
        report = run_job(feature_jobs.talking, instance, store)
    assert report.success

    logs = step_logs(instance, report)
    assert set(logs) == {"talk_a", "talk_b"}
    for step, other in (("talk_a", "talk_b"), ("talk_b", "talk_a")):
        stdout, stderr = logs[step]
        assert stdout.splitlines() == [f"{step} says {n}" for n in range(20)]
        # stderr also holds Dagster's own log lines of the step, as Dagster's capture has them
        printed = [line for line in stderr.splitlines() if " - dagster - " not in line]
        assert printed == [f"{step} warns {n}" for n in range(20)]
        assert other not in stdout + stderr
        assert "step_started" not in stdout + stderr  # the worker's own logs stay out


def test_subprocess_isolation_captures_a_child_process_too(
    instance: DagsterInstance, store: SqlIdempotencyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The step processes import support.feature_jobs as the run's code pointer names it.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    with workers_on_a_queue(
        store, LOCATIONS, runner_factory=lambda: SubprocessStepRunner(LOCATIONS)
    ):
        report = run_job(feature_jobs.talking_child, instance, store)
    assert report.success

    stdout, _ = step_logs(instance, report)["talk_through_a_child"]
    assert "talk_through_a_child says hello" in stdout
    assert "child process says hello" in stdout
