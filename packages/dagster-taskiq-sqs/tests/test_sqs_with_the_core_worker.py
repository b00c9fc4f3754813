"""The broker under dagster-taskiq's worker loop: claim, run, heartbeat, finish, ack, release."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dagster_taskiq import CodePointer, OpExecutionTask, SqlIdempotencyStore, TaskState
from dagster_taskiq.worker import StepOutcome, Worker, WorkerOptions
from dagster_taskiq_testing import InMemorySqsBroker


class CountingRunner:
    """Stands in for Dagster: each step takes ``seconds`` and succeeds."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ran: list[str] = []
        self.release = threading.Event()

    def run(self, task: OpExecutionTask) -> StepOutcome:
        self.ran.append(task.idempotency_key)
        deadline = time.monotonic() + self.seconds
        # Short waits: the worker interrupts a step by raising in its thread between them.
        while not self.release.wait(0.02) and time.monotonic() < deadline:
            pass
        return StepOutcome(TaskState.COMPLETED)


@dataclasses.dataclass
class _WorkerOnTheStub:
    sender: Any
    """The executor's broker on the worker's queue."""
    worker: Worker
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    running: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.running = asyncio.create_task(self.worker.run(self.stop))
        return self.running


@contextlib.asynccontextmanager
async def _worker(
    stub_harness: Any, store: SqlIdempotencyStore, runner: CountingRunner, **options: Any
) -> AsyncIterator[_WorkerOnTheStub]:
    """A core ``Worker`` (``options``) on a broker of the stub's queue, running ``runner``'s
    steps, started by ``start()``; on the way out, steps are let go and the worker stopped."""
    sender = await stub_harness.broker()
    worker_broker = InMemorySqsBroker(sender.settings, sqs=stub_harness.stub)
    assert worker_broker.settings.max_messages == 10
    worker = Worker(worker_broker, store, runner, WorkerOptions(visibility_timeout=30, **options))
    on_the_stub = _WorkerOnTheStub(sender, worker)
    try:
        yield on_the_stub
    finally:
        runner.release.set()
        on_the_stub.stop.set()
        if on_the_stub.running is not None:
            await asyncio.wait_for(on_the_stub.running, 30)


def _task(step: str, *, enqueue_attempt: int = 0) -> OpExecutionTask:
    return OpExecutionTask(
        run_id="run-1",
        step_key=step,
        idempotency_key=f"run-1:{step}",
        code=CodePointer(job_name="job", module="jobs"),
        instance_ref={},
        created_at=time.time(),
        enqueue_attempt=enqueue_attempt,
    )


async def test_core_worker_runs_a_step_once_and_acks_after_recording_it(
    stub_harness, kick, wait_until, tmp_path: Path
) -> None:
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    runner = CountingRunner(seconds=0.5)
    async with _worker(
        stub_harness, store, runner, concurrency=2, heartbeat_interval=0.1, cancel_check_interval=60
    ) as worker:
        worker.start()
        sender, queue = worker.sender, worker.sender.settings.queue
        task = _task("a")
        store.ensure_pending(task)
        await kick(sender, "run-1", "a", payload=task.to_json())
        await wait_until(lambda: runner.ran == ["run-1:a"], 10, "the step to start")
        # While it runs: the worker took the message's visibility over (30 s, the lease).
        assert stub_harness.counts(queue) == (0, 1)
        await wait_until(
            lambda: len(stub_harness.stub.calls_to("change_message_visibility")) >= 3,
            10,
            "visibility heartbeats",
        )
        extensions = stub_harness.stub.calls_to("change_message_visibility")
        assert {c.params["VisibilityTimeout"] for c in extensions} == {30}
        runner.release.set()

        def finished() -> bool:
            record = store.get("run-1:a")
            return record is not None and record.state is TaskState.COMPLETED

        await wait_until(finished, 10, "the step recorded COMPLETED")
        await wait_until(lambda: stub_harness.counts(queue) == (0, 0), 10, "the ack")
        # A duplicate delivery of a finished step is acked without running it again.
        await kick(sender, "run-1", "a", payload=task.to_json(), enqueue_attempt=1)
        await wait_until(lambda: stub_harness.counts(queue) == (0, 0), 10, "the duplicate acked")
        assert runner.ran == ["run-1:a"]
    store.close()


async def test_core_worker_gives_unfinished_steps_back_when_it_stops(
    stub_harness, kick, wait_until, tmp_path: Path
) -> None:
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    runner = CountingRunner(seconds=30)
    async with _worker(
        stub_harness, store, runner, concurrency=2, grace_period=0.2, cancel_check_interval=60
    ) as worker:
        running = worker.start()
        sender, queue = worker.sender, worker.sender.settings.queue
        task = _task("slow")
        store.ensure_pending(task)
        await kick(sender, "run-1", "slow", payload=task.to_json())
        await wait_until(lambda: runner.ran == ["run-1:slow"], 10, "the step to start")
        worker.stop.set()  # SIGTERM: the grace period passes, the step is released
        await asyncio.wait_for(running, 30)
    assert stub_harness.counts(queue) == (1, 0)  # visible again, for another worker, at once
    [released] = stub_harness.stub.visible_messages(queue)
    assert released.receive_count == 1
    record = store.get("run-1:slow")
    assert record is not None
    assert record.state is TaskState.PENDING
    store.close()


async def test_a_worker_takes_as_many_messages_as_it_has_free_slots(
    stub_harness, kick, wait_until, tmp_path: Path
) -> None:
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    runner = CountingRunner(seconds=30)
    async with _worker(
        stub_harness, store, runner, concurrency=3, cancel_check_interval=60
    ) as worker:
        sender = worker.sender
        for n in range(5):
            task = _task(f"s{n}")
            store.ensure_pending(task)
            await kick(sender, "run-1", f"s{n}", payload=task.to_json())
        worker.start()  # after the five messages: its first receive finds them all
        await wait_until(lambda: len(runner.ran) == 3, 10, "three steps to start")
        # One receive filled the three slots; the other two messages stayed in the queue.
        asked = [
            c.params["MaxNumberOfMessages"] for c in stub_harness.stub.calls_to("receive_message")
        ]
        assert asked[0] == 3
        assert stub_harness.counts(sender.settings.queue) == (2, 3)
        runner.release.set()  # the steps end; their slots take the rest
        await wait_until(lambda: len(runner.ran) == 5, 10, "the last two steps to start")
        await wait_until(
            lambda: stub_harness.counts(sender.settings.queue) == (0, 0), 10, "every ack"
        )
    store.close()
