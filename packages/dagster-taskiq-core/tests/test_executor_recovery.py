"""Duplicate deliveries, dead workers, refused payloads, termination (in-process workers)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DagsterUnmetExecutorRequirementsError,
    ReexecutionOptions,
    execute_job,
    reconstructable,
)
from taskiq.message import TaskiqMessage

from dagster_taskiq import ExecutorSettings, OpExecutionTask, SqlIdempotencyStore, TaskState
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from dagster_taskiq.worker import StepRunner, Worker, WorkerOptions
from support import job_shapes
from support.executor_harness import (
    InProcessWorkers,
    cancelled_once_started,
    injected,
    run_job,
    wait_for_final_records,
)
from support.thread_broker import ThreadQueueBroker


def sent_tasks(broker: ThreadQueueBroker) -> list[OpExecutionTask]:
    messages = [TaskiqMessage.model_validate_json(m.message) for m in broker.sent]
    return [OpExecutionTask.from_json(m.args[0]) for m in messages]


def test_duplicate_delivery_of_a_completed_step_does_not_run_it_again(
    instance: DagsterInstance, store: SqlIdempotencyStore, ledger: Path
) -> None:
    broker = ThreadQueueBroker()
    with injected(broker, store), InProcessWorkers(lambda: broker, store, count=2) as workers:
        report = run_job(job_shapes.diamond, instance, store)
        assert report.success
        before = Counter(job_shapes.read_ledger(str(ledger), report.run_id))
        handled = sum(w.processed for w in workers.workers)
        # Deliver a second copy of every message of the run (as SQS may), then wait for them.
        for message in list(broker.sent):
            broker.queue.put(message.message)
        deadline = time.monotonic() + 20
        while sum(w.processed for w in workers.workers) < handled + len(broker.sent):
            assert time.monotonic() < deadline, "duplicates were not all handled"
            time.sleep(0.05)
    after = Counter(job_shapes.read_ledger(str(ledger), report.run_id))
    assert after == before  # no op body ran again
    assert all(n == 1 for n in after.values())
    records = store.records_for_run(report.run_id)
    assert all(r.state is TaskState.COMPLETED and r.attempt == 1 for r in records)
    assert broker.acked == 2 * len(broker.sent)  # every copy was acked


def test_a_step_whose_worker_vanished_is_reclaimed_and_re_enqueued(
    instance: DagsterInstance, store: SqlIdempotencyStore, ledger: Path
) -> None:
    broker = ThreadQueueBroker()
    settings = ExecutorSettings(backend="injected", visibility_timeout=1.0, poll_interval=0.1)
    stolen: list[OpExecutionTask] = []

    def zombie() -> None:
        # Takes the first message, claims it with a 1 s lease, then dies silently.
        raw = broker.queue.get(timeout=30)
        task = OpExecutionTask.from_json(TaskiqMessage.model_validate_json(raw).args[0])
        assert store.claim(task.idempotency_key, "zombie", 1.0) == 1
        stolen.append(task)

    thief = threading.Thread(target=zombie)
    thief.start()
    with injected(broker, store, settings):
        holder: dict[str, object] = {}

        def start_workers_after_theft() -> None:
            thief.join()
            holder["workers"] = InProcessWorkers(lambda: broker, store, count=1).__enter__()

        starter = threading.Thread(target=start_workers_after_theft)
        starter.start()
        report = run_job(job_shapes.chain, instance, store)
        starter.join()
        holder["workers"].__exit__(None, None, None)  # type: ignore[attr-defined]
    assert report.success
    assert len(stolen) == 1
    record = next(r for r in report.records if r.step_key == stolen[0].step_key)
    assert (record.state, record.attempt, record.enqueue_attempt) == (TaskState.COMPLETED, 2, 1)
    assert record.result is not None
    assert record.result.worker_id.startswith("test-worker")
    runs = Counter(job_shapes.read_ledger(str(ledger), report.run_id))
    assert runs[stolen[0].step_key] == 1  # the zombie never ran it
    engine_messages = [e.message for e in report.events if "re-enqueued" in (e.message or "")]
    assert engine_messages, "the re-enqueue is reported in the run's event log"


def test_worker_refuses_code_outside_its_locations(
    instance: DagsterInstance, store: SqlIdempotencyStore, ledger: Path
) -> None:
    broker = ThreadQueueBroker()
    elsewhere = CodeLocations([CodeLocation(module="some_other_project.definitions")])
    worker = Worker(broker, store, StepRunner(elsewhere), WorkerOptions(concurrency=1))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(stop),))
    settings = ExecutorSettings(backend="injected", poll_interval=0.1)
    thread.start()
    try:
        with injected(broker, store, settings):
            report = run_job(job_shapes.chain, instance, store)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
    assert not report.success
    assert report.outcomes["start"] == "failure"
    failure = next(e for e in report.events if e.is_step_failure and e.step_key == "start")
    assert (
        "refusing job 'chain' from module support.job_shapes"
        in failure.step_failure_data.error.message
    )
    assert job_shapes.read_ledger(str(ledger), report.run_id) == []


def test_bad_messages_never_stop_the_worker(
    instance: DagsterInstance, store: SqlIdempotencyStore, ledger: Path
) -> None:
    broker = ThreadQueueBroker()
    valid = TaskiqMessage(
        task_id="x", task_name="dagster_taskiq.execute_step", labels={}, args=["{}"], kwargs={}
    )
    for junk in [
        b"\x00\xff not json",
        b'{"task_id": "1"}',
        TaskiqMessage(task_id="y", task_name="someone.else", labels={}, args=[], kwargs={})
        .model_dump_json()
        .encode(),
        valid.model_dump_json().encode(),  # our task, but a payload with every field missing
    ]:
        broker.queue.put(junk)
    with injected(broker, store), InProcessWorkers(lambda: broker, store, count=1) as workers:
        report = run_job(job_shapes.diamond, instance, store)
        assert sum(w.processed for w in workers.workers) >= 4 + len(report.records)
    assert report.success
    assert broker.acked >= 4 + len(report.records)


def test_reexecution_from_failure_skips_completed_steps(
    instance: DagsterInstance,
    store: SqlIdempotencyStore,
    ledger: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = ThreadQueueBroker()
    monkeypatch.setenv("DAGSTER_TASKIQ_TEST_FAIL_ONCE", str(tmp_path / "failed-once"))
    with injected(broker, store), InProcessWorkers(lambda: broker, store, count=2):
        first = run_job(job_shapes.fails_once, instance, store)
        assert not first.success
        with execute_job(
            reconstructable(job_shapes.fails_once),
            instance=instance,
            reexecution_options=ReexecutionOptions.from_failure(first.run_id, instance),
        ) as second:
            assert second.success
            second_run = second.run_id
    runs_first = Counter(job_shapes.read_ledger(str(ledger), first.run_id))
    runs_second = Counter(job_shapes.read_ledger(str(ledger), second_run))
    assert runs_first == {"start": 1, "fail_first_time": 1}
    assert runs_second == {"fail_first_time": 1, "add_one": 1}  # start was not run again
    assert {r.step_key for r in store.records_for_run(second_run)} == {
        "fail_first_time",
        "add_one",
    }


def test_terminating_a_run_interrupts_its_steps(
    instance: DagsterInstance,
    store: SqlIdempotencyStore,
    ledger: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGSTER_TASKIQ_TEST_SLOW_SECONDS", "20")
    broker = ThreadQueueBroker()
    settings = ExecutorSettings(backend="injected", poll_interval=0.1)

    with injected(broker, store, settings), InProcessWorkers(lambda: broker, store, count=1):
        started = time.monotonic()
        with cancelled_once_started(instance, str(ledger), timeout=30):
            report = run_job(job_shapes.slow_job, instance, store)
        # The worker interrupts the slow step when it sees the run cancelled.
        wait_for_final_records(store, report.run_id, timeout=10)
    assert time.monotonic() - started < 15
    run = instance.get_run_by_id(report.run_id)
    assert run is not None
    assert run.status == DagsterRunStatus.CANCELED
    notes = job_shapes.read_ledger(str(ledger), report.run_id)
    assert notes == ["slow"]  # started, never ended, and add_one never started
    record = store.get(f"{report.run_id}:slow")
    assert record is not None
    assert record.state is TaskState.FAILED


def test_an_in_memory_io_manager_is_refused_at_launch(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    broker = ThreadQueueBroker()
    with (
        injected(broker, store),
        pytest.raises(DagsterUnmetExecutorRequirementsError, match="persistent IO manager"),
    ):
        execute_job(reconstructable(job_shapes.in_memory_io), instance=instance)
    assert broker.sent == []  # nothing was sent
