"""A step that blocks where a thread cannot be interrupted (``time.sleep``, a child process, a
PostgreSQL ``pg_sleep``) is ended and its slot freed when its run is cancelled; a step past its
``dagster-taskiq/timeout`` fails naming the timeout, and the failure counts against its
RetryPolicy. The workers here are in-process (one slot each), the run on a thread of the test."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from dagster_taskiq import SqlIdempotencyStore, TaskState
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from dagster_taskiq.worker import WorkerOptions
from support import blocking_jobs
from support.executor_harness import run_job, workers_on_a_queue
from support.thread_broker import ThreadQueueBroker

LOCATIONS = CodeLocations([CodeLocation(module="support.blocking_jobs")])
OPTIONS = WorkerOptions(
    concurrency=1, visibility_timeout=30, cancel_check_interval=0.2, interrupt_grace=1.0
)


@pytest.fixture
def one_slot_worker(store: SqlIdempotencyStore) -> Iterator[ThreadQueueBroker]:
    """One worker with one slot; yields the queue it shares with the executor."""
    blocking_jobs.NOTES.clear()
    blocking_jobs.STARTED.clear()
    with workers_on_a_queue(store, LOCATIONS, options=OPTIONS) as broker:
        yield broker


def _sleep_children() -> list[int]:
    """Pids of the ``sleep 60.4321`` processes the subprocess op starts."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args[:2] == [b"sleep", blocking_jobs.SLEEP_ARG.encode()]:
            found.append(int(proc.name))
    return found


@pytest.mark.parametrize(
    ("how", "terminate"),
    [
        ("sleep", False),
        ("sleep", True),
        ("subprocess", False),
        pytest.param("pg_sleep", False, marks=pytest.mark.postgres),
    ],
)
@pytest.mark.usefixtures("one_slot_worker")
def test_a_blocked_step_of_a_cancelled_run_is_ended_and_its_slot_freed(
    how: str, terminate: bool, instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    run_config: dict[str, Any] = {"ops": {"blocked": {"config": {"how": how}}}}

    def cancel_when_started() -> None:
        assert blocking_jobs.STARTED.wait(60), "the blocking step never started"
        (run,) = instance.get_runs()
        # Marked CANCELING (as run monitoring or another launcher may do it: the run process
        # is not interrupted; its executor sees the status), and with ``terminate`` the run
        # process interrupted too, as the UI's terminate does it.
        instance.report_run_canceling(run)
        if terminate:
            os.kill(os.getpid(), signal.SIGINT)  # Dagster turns it into the run's interrupt

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    report = run_job(blocking_jobs.blocking, instance, store, run_config=run_config)
    canceller.join()

    assert instance.get_run_by_id(report.run_id).status is DagsterRunStatus.CANCELED
    assert "ended" not in blocking_jobs.NOTES[how]  # the op's body never went past its call
    if how == "subprocess":  # SIGTERM ended the child, and so the wait: the step ended itself
        assert _sleep_children() == [], "the step's child process was not stopped"

    # The worker's one slot is free again, long before a blocked call could have returned.
    quick = run_job(blocking_jobs.quick_job, instance, store)
    assert quick.success

    (record,) = store.records_for_run(report.run_id)
    assert record.state is TaskState.FAILED
    assert record.result is not None
    # Recorded long before the blocked call (60 s) could have returned by itself.
    assert record.result.finished_at - record.result.started_at < 50
    if how == "sleep":  # still blocked: the worker gave the step up after its grace
        assert "ended" not in blocking_jobs.NOTES[how]
        assert record.result.error_class == "StepInterrupted"
        assert "did not stop within 1 s" in (record.result.error_message or "")
    else:  # psycopg waits in Python between polls: the interrupt itself ended the step
        assert record.result.error_class in ("StepInterrupted", "DagsterExecutionInterruptedError")


@pytest.mark.usefixtures("one_slot_worker")
def test_a_step_blocked_past_its_timeout_is_given_up_and_retried_by_its_policy(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    report = run_job(blocking_jobs.blocked_timeout, instance, store)

    assert not report.success
    assert blocking_jobs.NOTES["sleeps_past_timeout"] == ["started", "started"]  # the retry ran
    kinds = [e.event_type for e in report.events if e.step_key == "sleeps_past_timeout"]
    assert kinds.count(DagsterEventType.STEP_UP_FOR_RETRY) == 1
    assert kinds.count(DagsterEventType.STEP_FAILURE) == 1
    (failure,) = [e for e in report.events if e.event_type is DagsterEventType.STEP_FAILURE]
    assert "timeout of 1 s" in failure.step_failure_data.error.message
    (record,) = report.records
    assert record.result is not None
    assert record.result.error_class == "StepTimeoutError"


@pytest.mark.usefixtures("one_slot_worker")
def test_python_code_past_its_timeout_fails_with_the_timeout_named(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    report = run_job(blocking_jobs.busy_timeout, instance, store)

    assert not report.success
    assert blocking_jobs.NOTES["computes_past_timeout"] == ["started"]
    (failure,) = [e for e in report.events if e.event_type is DagsterEventType.STEP_FAILURE]
    text = failure.step_failure_data.error.to_string()
    assert "StepTimeoutError" in text
    assert "timeout of 1 s (op tag dagster-taskiq/timeout)" in text


def test_a_bad_timeout_tag_fails_the_run_before_any_step_is_sent(
    instance: DagsterInstance, store: SqlIdempotencyStore, one_slot_worker: ThreadQueueBroker
) -> None:
    report = run_job(blocking_jobs.bad_timeout_job, instance, store)

    assert not report.success
    assert one_slot_worker.sent == []
    text = "\n".join(
        str(e.event_specific_data.error.message)
        for e in report.events
        if e.event_type is DagsterEventType.RUN_FAILURE and e.event_specific_data.error
    )
    assert "op tag dagster-taskiq/timeout of step 'bad_timeout'" in text
    assert "got 'soon'" in text


@pytest.mark.usefixtures("one_slot_worker")
def test_a_cancelled_run_gives_back_the_pool_slot_of_its_blocked_step(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    storage = instance.event_log_storage
    storage.set_concurrency_slots(blocking_jobs.BLOCKING_POOL, 1)

    def cancel_when_started() -> None:
        assert blocking_jobs.STARTED.wait(60), "the blocking step never started"
        (run,) = instance.get_runs()
        assert storage.get_concurrency_info(blocking_jobs.BLOCKING_POOL).active_slot_count == 1
        instance.report_run_canceling(run)

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    report = run_job(blocking_jobs.pooled_blocking, instance, store)
    canceller.join()

    assert instance.get_run_by_id(report.run_id).status is DagsterRunStatus.CANCELED
    assert "ended" not in blocking_jobs.NOTES["pooled_blocked"]
    info = storage.get_concurrency_info(blocking_jobs.BLOCKING_POOL)
    assert info.active_slot_count == 0  # the slot is free while the blocked call still runs
