"""The fence over a step's Dagster events (``dagster_taskiq.worker._fence``).

Regression tests for three double outcomes the chaos suite found (issue 8): a worker paused past
its lease woke up and wrote a second STEP_SUCCESS after another worker had run the step; a step
released by a stopping worker wrote an "interrupted" STEP_FAILURE before running again
elsewhere (the executor then failed the run on Dagster's invariant); and a worker SIGKILLed
between its step's STEP_SUCCESS and ``finish`` left the step to be run, and succeed, again.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dagster import DagsterEventType, DagsterInstance, reconstructable

from dagster_taskiq import OpExecutionTask, SqlIdempotencyStore, TaskState, idempotency_key
from dagster_taskiq.code_locations import pointer_for_job
from dagster_taskiq.instances import LogCapture, instance_ref_payload
from dagster_taskiq.worker import StepRunner
from dagster_taskiq.worker._fence import StepFence
from dagster_taskiq.worker._quiet_events import SLOW_RESOURCE_INIT, QuietEvents
from support import job_shapes
from support.executor_harness import SHAPES_LOCATIONS


def _start_task(instance: DagsterInstance) -> OpExecutionTask:
    """The ``start`` step (no inputs) of a fresh run of ``job_shapes.chain``."""
    run = instance.create_run_for_job(job_shapes.chain, run_config={})
    return OpExecutionTask(
        run_id=run.run_id,
        step_key="start",
        idempotency_key=idempotency_key(run.run_id, "start"),
        code=pointer_for_job(reconstructable(job_shapes.chain)),
        instance_ref=instance_ref_payload(instance),
        created_at=time.time(),
    )


def _fence(
    store: SqlIdempotencyStore, task: OpExecutionTask, token: int, lease: float = 30
) -> StepFence:
    return StepFence(
        store,
        key=task.idempotency_key,
        run_id=task.run_id,
        step_key=task.step_key,
        token=token,
        lease_seconds=lease,
    )


def _claimed(
    instance: DagsterInstance, store: SqlIdempotencyStore, owner: str
) -> tuple[OpExecutionTask, int]:
    """The ``start`` step of a new run, pending, then claimed by ``owner`` for 30 s."""
    task = _start_task(instance)
    store.ensure_pending(task)
    token = store.claim(task.idempotency_key, owner, 30)
    assert token is not None
    return task, token


def _events(instance: DagsterInstance, run_id: str) -> list[DagsterEventType]:
    return [
        e.dagster_event.event_type
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.step_key == "start"
    ]


def test_the_holder_writes_the_outcome_event_once(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    task, token = _claimed(instance, store, "holder")
    fence = _fence(store, task, token)
    outcome = fence.run(lambda: StepRunner(SHAPES_LOCATIONS).run(task))
    assert outcome.state is TaskState.COMPLETED
    assert not fence.revoked
    assert fence.dropped == 0
    assert _events(instance, task.run_id).count(DagsterEventType.STEP_SUCCESS) == 1


def test_a_worker_that_lost_its_claim_writes_no_outcome_event(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    task = _start_task(instance)
    store.ensure_pending(task)
    stale = store.claim(task.idempotency_key, "paused-worker", 0.05)
    assert stale is not None
    time.sleep(0.2)  # the lease expires while the first holder is paused
    current = store.claim(task.idempotency_key, "other-worker", 30)
    assert current == stale + 1
    fence = _fence(store, task, stale)
    outcome = fence.run(lambda: StepRunner(SHAPES_LOCATIONS).run(task))
    assert outcome.state is TaskState.COMPLETED  # the body ran to its end ...
    events = _events(instance, task.run_id)
    assert DagsterEventType.STEP_SUCCESS not in events  # ... but its outcome never reached the log
    assert fence.revoked
    assert fence.reason is not None
    assert "lease lost" in fence.reason
    record = store.get(task.idempotency_key)
    assert record is not None
    assert (record.state, record.attempt, record.owner) == (TaskState.RUNNING, 2, "other-worker")


def test_a_released_step_writes_no_event_at_all(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    task, token = _claimed(instance, store, "stopping-worker")
    fence = _fence(store, task, token)
    fence.revoke("released: the worker is stopping")
    fence.run(lambda: StepRunner(SHAPES_LOCATIONS).run(task))
    assert _events(instance, task.run_id) == []
    assert fence.dropped > 0


def test_a_reclaimed_step_whose_outcome_is_logged_is_not_run_again(
    instance: DagsterInstance,
    store: SqlIdempotencyStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "ledger").mkdir()
    monkeypatch.setenv(job_shapes.LEDGER_ENV, str(tmp_path / "ledger"))
    task = _start_task(instance)
    store.ensure_pending(task)
    first = store.claim(task.idempotency_key, "dies-before-finish", 0.05)
    assert first == 1
    # The first holder runs the step and writes its success, then dies before ``finish``.
    _fence(store, task, first, lease=0.05).run(lambda: StepRunner(SHAPES_LOCATIONS).run(task))
    time.sleep(0.2)
    second = store.claim(task.idempotency_key, "next-worker", 30)
    assert second == 2
    outcome = _fence(store, task, second).run(lambda: StepRunner(SHAPES_LOCATIONS).run(task))
    assert outcome.state is TaskState.COMPLETED
    assert job_shapes.read_ledger(str(tmp_path / "ledger"), task.run_id) == ["start"]  # once
    assert _events(instance, task.run_id).count(DagsterEventType.STEP_SUCCESS) == 1


def test_events_outside_a_fenced_thread_are_untouched(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    task = _start_task(instance)
    outcome = StepRunner(SHAPES_LOCATIONS).run(task)  # no fence current: as before
    assert outcome.state is TaskState.COMPLETED
    assert _events(instance, task.run_id).count(DagsterEventType.STEP_SUCCESS) == 1


class _CountingStore:
    """The store, counting the heartbeats the fence asks of it."""

    def __init__(self, store: SqlIdempotencyStore) -> None:
        self.store = store
        self.heartbeats = 0

    def heartbeat(self, key: str, token: int, lease_seconds: float) -> bool:
        self.heartbeats += 1
        return self.store.heartbeat(key, token, lease_seconds)


def test_a_claim_younger_than_half_its_lease_admits_the_outcome_without_a_round_trip(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    task = _start_task(instance)
    store.ensure_pending(task)
    now = [500.0]
    sent_at = now[0]
    token = store.claim(task.idempotency_key, "holder", 30)
    assert token is not None
    counting = _CountingStore(store)
    fence = StepFence(
        counting,  # type: ignore[arg-type]  # only heartbeat is used
        key=task.idempotency_key,
        run_id=task.run_id,
        step_key=task.step_key,
        token=token,
        lease_seconds=30,
        confirmed_at=sent_at,
        clock=lambda: now[0],
    )
    now[0] += 14.9  # under half the lease since the claim was sent
    assert fence.confirm()
    assert counting.heartbeats == 0
    now[0] += 0.2  # over half: the store is asked, and its answer counts from now
    assert fence.confirm()
    assert counting.heartbeats == 1
    assert fence.confirm()
    assert counting.heartbeats == 1
    # A heartbeat that found the claim held moves the confirmation on.
    now[0] += 20
    fence.renewed(now[0])
    assert fence.confirm()
    assert counting.heartbeats == 1


def test_a_claim_older_than_half_its_lease_is_confirmed_with_the_store_and_may_be_lost(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    task = _start_task(instance)
    store.ensure_pending(task)
    sent_at = time.monotonic()
    stale = store.claim(task.idempotency_key, "paused-worker", 0.05)
    assert stale is not None
    time.sleep(0.2)  # paused past its lease: another worker takes the step
    assert store.claim(task.idempotency_key, "other-worker", 30) == stale + 1
    fence = _fence(store, task, stale, lease=0.05)
    fence.confirmed_at = sent_at
    fence.run(lambda: StepRunner(SHAPES_LOCATIONS).run(task))
    assert DagsterEventType.STEP_SUCCESS not in _events(instance, task.run_id)
    assert fence.revoked


@pytest.mark.parametrize("log_capture", [LogCapture.THREAD, LogCapture.NONE])
def test_a_thread_worker_step_writes_no_quick_resource_init_and_logs_captured_if_it_captures(
    instance: DagsterInstance, store: SqlIdempotencyStore, log_capture: LogCapture
) -> None:
    task, token = _claimed(instance, store, "holder")
    runner = StepRunner(SHAPES_LOCATIONS, log_capture=log_capture)
    _fence(store, task, token).run(lambda: runner.run(task))
    kinds = [
        e.dagster_event.event_type
        for e in instance.all_logs(task.run_id)
        if e.dagster_event is not None
    ]
    assert DagsterEventType.RESOURCE_INIT_STARTED not in kinds
    assert DagsterEventType.RESOURCE_INIT_SUCCESS not in kinds
    # Captured per step thread: the UI's link to the step's logs; not captured: no link.
    assert kinds.count(DagsterEventType.LOGS_CAPTURED) == (log_capture is LogCapture.THREAD)
    assert kinds.count(DagsterEventType.STEP_SUCCESS) == 1


def _entry(event_type: DagsterEventType, timestamp: float) -> Any:
    return SimpleNamespace(
        dagster_event=SimpleNamespace(event_type=event_type), timestamp=timestamp
    )


def test_slow_resource_initialisation_is_written_with_its_start() -> None:
    quiet = QuietEvents(capture_compute_logs=False)
    held: list[Any] = []
    start = _entry(DagsterEventType.RESOURCE_INIT_STARTED, 10.0)
    assert quiet.to_write(start, held) == []
    success = _entry(DagsterEventType.RESOURCE_INIT_SUCCESS, 10.0 + 2 * SLOW_RESOURCE_INIT)
    assert quiet.to_write(success, held) == [start, success]
    assert held == []
    # A quick one: neither; a failure: always, after its start.
    assert quiet.to_write(start, held) == []
    assert quiet.to_write(_entry(DagsterEventType.RESOURCE_INIT_SUCCESS, 10.01), held) == []
    failure = _entry(DagsterEventType.RESOURCE_INIT_FAILURE, 10.01)
    assert quiet.to_write(start, held) == []
    assert quiet.to_write(failure, held) == [start, failure]
    captured = _entry(DagsterEventType.LOGS_CAPTURED, 11.0)
    assert quiet.to_write(captured, held) == []
    assert QuietEvents(capture_compute_logs=True).to_write(captured, held) == [captured]
