"""Run a job through ``DagsterTaskIQExecutor`` with in-process workers, and summarise runs."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable
from taskiq import AsyncBroker

from dagster_taskiq import ExecutorSettings, IdempotencyRecord, SqlIdempotencyStore
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from dagster_taskiq.worker import RunsSteps, StepRunner, Worker, WorkerOptions
from dagster_taskiq_testing import WorkerThreads
from support import job_shapes
from support.thread_broker import ThreadQueueBroker

SHAPES_LOCATIONS = CodeLocations(
    [CodeLocation(module="support.job_shapes"), CodeLocation(python_file=job_shapes.__file__)]
)


def step_outcomes(events: Any) -> dict[str, str]:
    """step key -> success / failure / skipped, from a run's events."""
    kinds = {
        DagsterEventType.STEP_SUCCESS: "success",
        DagsterEventType.STEP_FAILURE: "failure",
        DagsterEventType.STEP_SKIPPED: "skipped",
    }
    outcomes = {}
    for event in events:
        kind = kinds.get(event.event_type)
        if kind is not None and event.step_key is not None:
            outcomes[event.step_key] = kind
    return outcomes


def materializations(events: Any) -> set[tuple[str, str | None]]:
    """(asset key, partition) of every materialization, and of every asset check evaluation."""
    found = set()
    for event in events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            m = event.step_materialization_data.materialization
            found.add((m.asset_key.to_user_string(), m.partition))
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            e = event.asset_check_evaluation_data
            found.add((f"{e.asset_key.to_user_string()}:{e.check_name}", str(e.passed)))
    return found


def count_events(events: Any, event_type: DagsterEventType) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        if event.event_type == event_type and event.step_key is not None:
            counts[event.step_key] = counts.get(event.step_key, 0) + 1
    return counts


def wait_for_final_records(
    store: SqlIdempotencyStore, run_id: str, timeout: float = 30.0
) -> list[IdempotencyRecord]:
    """The run's records once all are final: a worker records a step's outcome just after
    Dagster's event for it, so a run can end a moment before its last record is final."""
    deadline = time.monotonic() + timeout
    while True:
        records = store.records_for_run(run_id)
        if all(r.state.is_final for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


@dataclasses.dataclass
class RunReport:
    success: bool
    run_id: str
    outcomes: dict[str, str]
    outputs: dict[str, Any]
    records: list[IdempotencyRecord]
    success_events: dict[str, int]
    materializations: set[tuple[str, str | None]]
    events: list[Any]


class InProcessWorkers(WorkerThreads):
    """``count`` workers on threads (dagster-taskiq-testing's ``WorkerThreads``), sharing
    ``store`` and each with a broker from ``broker_factory``."""

    def __init__(
        self,
        broker_factory: Callable[[], AsyncBroker],
        store: SqlIdempotencyStore,
        *,
        count: int = 2,
        options: WorkerOptions | None = None,
        runner_factory: Callable[[], RunsSteps] | None = None,
    ) -> None:
        workers = []
        for n in range(count):
            opts = options or WorkerOptions(concurrency=2, visibility_timeout=30)
            opts = dataclasses.replace(opts, worker_id=f"test-worker-{n}")
            runner = runner_factory() if runner_factory else StepRunner(SHAPES_LOCATIONS)
            workers.append(Worker(broker_factory(), store, runner, opts))
        super().__init__(workers)


@contextlib.contextmanager
def injected(
    broker: AsyncBroker, store: SqlIdempotencyStore, settings: ExecutorSettings | None = None
) -> Iterator[None]:
    job_shapes.INJECTED.update(broker=broker, store=store, settings=settings)
    try:
        yield
    finally:
        job_shapes.INJECTED.clear()


def run_job(
    job_fn: Any,
    instance: DagsterInstance,
    store: SqlIdempotencyStore,
    *,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    output_nodes: tuple[str, ...] = (),
) -> RunReport:
    with execute_job(
        reconstructable(job_fn),
        instance=instance,
        run_config=dict(run_config or {}),
        tags=dict(tags or {}),
        raise_on_error=False,
    ) as result:
        events = result.all_events
        outputs = {
            node: result.output_for_node(node)
            for node in output_nodes
            if step_outcomes(events).get(node) == "success"
            or any(k.startswith(node + "[") for k in step_outcomes(events))
        }
        return RunReport(
            success=result.success,
            run_id=result.run_id,
            outcomes=step_outcomes(events),
            outputs=outputs,
            records=wait_for_final_records(store, result.run_id),
            success_events=count_events(events, DagsterEventType.STEP_SUCCESS),
            materializations=materializations(events),
            events=list(events),
        )


@contextlib.contextmanager
def workers_on_a_queue(
    store: SqlIdempotencyStore,
    locations: CodeLocations,
    *,
    count: int = 1,
    concurrency: int = 2,
    options: WorkerOptions | None = None,
    settings: ExecutorSettings | None = None,
    runner_factory: Callable[[], RunsSteps] | None = None,
) -> Iterator[ThreadQueueBroker]:
    """``count`` in-process workers serving ``locations`` (``concurrency`` slots each, or
    ``options``) and the executor of the jobs of ``job_shapes.injected_executor``, sharing one
    ``ThreadQueueBroker`` (yielded) and ``store``."""
    broker = ThreadQueueBroker()
    with (
        injected(
            broker, store, settings or ExecutorSettings(backend="injected", poll_interval=0.2)
        ),
        InProcessWorkers(
            lambda: broker,
            store,
            count=count,
            options=options or WorkerOptions(concurrency=concurrency, visibility_timeout=30),
            runner_factory=runner_factory or (lambda: StepRunner(locations)),
        ),
    ):
        yield broker


@contextlib.contextmanager
def cancelled_once_started(
    instance: DagsterInstance, ledger: str, timeout: float
) -> Iterator[None]:
    """While in the block: once the first run's first step has started (written to the
    ``ledger`` directory), mark the run CANCELING and SIGINT this process, as terminating the
    run from the UI does to its run process; joined at the end of the block."""

    def cancel_when_started() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            if runs and job_shapes.read_ledger(ledger, runs[0].run_id):
                instance.report_run_canceling(runs[0])
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    try:
        yield
    finally:
        canceller.join()
