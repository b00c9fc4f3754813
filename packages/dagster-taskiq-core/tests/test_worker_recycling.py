"""Worker recycling (``--max-steps``, ``--max-memory``): the worker stops taking messages,
finishes what it runs and returns (the CLI exits 0); the messages it did not start go to the
next worker; bad values are refused before the worker takes a message."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dagster_taskiq import (
    CodePointer,
    OpExecutionTask,
    SqlIdempotencyStore,
    TaskState,
    idempotency_key,
)
from dagster_taskiq.backends import create_broker
from dagster_taskiq.cli import main
from dagster_taskiq.executor._broker_thread import step_message
from dagster_taskiq.worker import StepOutcome, Worker, WorkerOptions
from dagster_taskiq.worker._recycling import RecycleReason, resident_mib
from support import job_shapes
from support.worker_processes import one_sqs_worker


class LedgerRunner:
    """Runs a step by writing its key down (and, with ``allocate``, keeping that many MiB)."""

    def __init__(self, allocate: int = 0) -> None:
        self.ledger: list[str] = []
        self.allocate = allocate
        self.kept: list[bytes] = []

    def run(self, task: OpExecutionTask) -> StepOutcome:
        self.ledger.append(task.step_key)
        if self.allocate:
            self.kept.append(b"x" * (self.allocate * 2**20))  # written: resident, not lazy
        return StepOutcome(TaskState.COMPLETED)


def _task(step: str) -> OpExecutionTask:
    return OpExecutionTask(
        run_id="run-1",
        step_key=step,
        idempotency_key=idempotency_key("run-1", step),
        code=CodePointer(job_name="j", module="m"),
        instance_ref={},
        created_at=time.time(),
    )


class Queue:
    """A queue of the memory backend (the SQS broker on the in-memory stub) with ``steps``
    sent, each pending in ``store``."""

    def __init__(self, store: SqlIdempotencyStore, steps: list[str]) -> None:
        self.settings = {
            "queue_name": f"recycle-{uuid.uuid4().hex[:10]}.fifo",
            "create_queues_if_missing": True,
            "wait_time_seconds": 1,
            "visibility_timeout": 30,
        }
        self.store = store
        asyncio.run(self._send([_task(step) for step in steps]))

    async def _send(self, tasks: list[OpExecutionTask]) -> None:
        broker = create_broker("memory", self.settings)
        await broker.startup()
        for task in tasks:
            self.store.ensure_pending(task)
            await broker.kick(broker.formatter.dumps(step_message(task)))
        await broker.shutdown()

    def worker(self, runner: LedgerRunner, **options: Any) -> Worker:
        return Worker(
            create_broker("memory", self.settings),
            self.store,
            runner,
            WorkerOptions(**{"concurrency": 2, "visibility_timeout": 30, **options}),
        )


async def _run_until(worker: Worker, done: Any, timeout: float = 60) -> None:
    """Run ``worker`` until it returns by itself, or stop it once ``done()``."""
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + timeout
    while not running.done() and not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 30)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    made = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield made
    made.close()


def test_after_max_steps_the_worker_returns_and_the_next_one_runs_the_rest(
    store: SqlIdempotencyStore,
) -> None:
    steps = [f"s{n}" for n in range(5)]
    queue = Queue(store, steps)
    first_runner = LedgerRunner()
    first = queue.worker(first_runner, max_steps=3)
    asyncio.run(_run_until(first, done=lambda: False))  # returns by itself

    assert first.recycled is RecycleReason.MAX_STEPS
    assert len(first_runner.ledger) == 3
    assert first.steps_started == 3
    second_runner = LedgerRunner()
    second = queue.worker(second_runner)
    asyncio.run(_run_until(second, done=lambda: len(second_runner.ledger) >= 2))
    assert sorted(first_runner.ledger + second_runner.ledger) == steps  # each once
    assert second.recycled is None
    assert all(store.get(idempotency_key("run-1", s)).state is TaskState.COMPLETED for s in steps)  # type: ignore[union-attr]


def test_above_max_memory_the_worker_finishes_and_returns(store: SqlIdempotencyStore) -> None:
    queue = Queue(store, ["big", "next", "last"])
    runner = LedgerRunner(allocate=64)
    worker = queue.worker(
        runner, max_memory=resident_mib() + 32, memory_check_interval=0.2, concurrency=1
    )
    try:
        asyncio.run(_run_until(worker, done=lambda: False))
    finally:
        runner.kept.clear()
    assert worker.recycled is RecycleReason.MAX_MEMORY
    # the step that passed the mark, and the one received while it ended (one slot)
    assert 1 <= len(runner.ledger) < 3


def _worker_cli(*args: str) -> Any:
    return CliRunner().invoke(
        main, ["worker", "--backend", "memory", "-m", "x", "--store-url", "sqlite://", *args]
    )


def test_bad_recycling_values_are_refused_before_the_worker_starts() -> None:
    result = _worker_cli("--max-steps", "ten")
    assert result.exit_code == 2
    assert "'ten' is not a valid integer" in result.output
    result = _worker_cli("--max-steps", "0")
    assert result.exit_code == 2
    assert "--max-steps" in result.output
    result = _worker_cli("--max-memory", "8")
    assert result.exit_code == 2
    assert "below this worker's size at start" in result.output
    assert "--max-memory" in result.output


@pytest.mark.sqs_server
def test_a_recycled_worker_process_exits_0_and_its_supervisor_restarts_it(
    sqs_server: Any, tmp_path: Path
) -> None:
    with one_sqs_worker(sqs_server.endpoint_url, tmp_path, "--max-steps", "2") as cluster:
        report = cluster.run(job_shapes.chain)
        workers = cluster.workers
        exit_codes = list(workers.exit_codes)
        logs = workers.logs()
    assert report.success
    assert len(report.records) == 6
    assert exit_codes[:2] == [0, 0], logs[-3000:]  # after steps 2 and 4 (6: maybe not yet seen)
    assert logs.count('"worker_recycled"') >= 2
