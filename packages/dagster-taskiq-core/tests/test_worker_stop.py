"""A worker told to stop while every slot is busy drains, releases and exits in bounded time."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from taskiq.kicker import AsyncKicker

from dagster_taskiq import CodePointer, OpExecutionTask, SqlIdempotencyStore, TaskState
from dagster_taskiq.messaging import STEP_TASK_NAME
from dagster_taskiq.worker import StepOutcome, Worker, WorkerOptions
from support.thread_broker import ThreadQueueBroker


class BlockingRunner:
    """Runs a 'step' that blocks until released (user code that ignores interrupts)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, task: OpExecutionTask) -> StepOutcome:
        self.started.set()
        self.release.wait(60)
        return StepOutcome(TaskState.COMPLETED)


def test_stop_while_all_slots_are_busy(tmp_path: Path) -> None:
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    broker = ThreadQueueBroker()
    task = OpExecutionTask(
        run_id="r",
        step_key="s",
        idempotency_key="r:s",
        code=CodePointer(job_name="j", module="m"),
        instance_ref={},
        created_at=time.time(),
    )
    store.ensure_pending(task)
    runner = BlockingRunner()
    worker = Worker(
        broker, store, runner, WorkerOptions(concurrency=1, visibility_timeout=30, grace_period=0.5)
    )

    async def scenario() -> float:
        stop = asyncio.Event()
        await AsyncKicker(task_name=STEP_TASK_NAME, broker=broker, labels={}).kiq(task.to_json())
        running = asyncio.create_task(worker.run(stop))
        await asyncio.to_thread(runner.started.wait, 10)
        stopped_at = time.monotonic()
        stop.set()
        await asyncio.wait_for(running, timeout=20)
        return time.monotonic() - stopped_at

    try:
        took = asyncio.run(scenario())
    finally:
        runner.release.set()
    assert took < 10  # the blocked step does not hold the worker for its whole duration
    record = store.get("r:s")
    assert record is not None
    assert record.state is TaskState.PENDING  # released for another worker
    assert broker.acked == 0  # and its message not acked
    store.close()
