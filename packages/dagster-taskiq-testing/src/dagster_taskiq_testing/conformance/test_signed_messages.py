"""Signed step messages on every backend (``dagster_taskiq.signing``, ``docs/security.md``): a
worker with keys runs what the executor signed for the queue it reads, and refuses, deletes and
counts the rest (a forged copy of a real task, a real message replayed into another queue, an
unsigned message, a key id it does not hold, an old key after a rotation) without claiming it.

The worker here is core's ``Worker`` with a runner that writes each step it runs to a ledger:
the step body of a refused message never runs.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from dagster_taskiq import (
    CodePointer,
    MessageSigner,
    MessageVerifier,
    OpExecutionTask,
    Refusal,
    SigningKey,
    SqlIdempotencyStore,
    TaskState,
    idempotency_key,
)
from dagster_taskiq.executor._broker_thread import step_message
from dagster_taskiq.messaging import LABEL_ENQUEUE_ATTEMPT
from dagster_taskiq.worker import Worker, WorkerOptions
from dagster_taskiq.worker._step_runner import StepOutcome
from dagster_taskiq_testing.broker_helpers import PATIENCE
from dagster_taskiq_testing.conformance._adapters import BrokerOptions, BrokerUnderTest

OLD = SigningKey.parse(f"2026-11:{'o' * 40}", source="test")
NEW = SigningKey.parse(f"2026-12:{'n' * 40}", source="test")
STRANGER = SigningKey.parse(f"elsewhere:{'x' * 40}", source="test")
OPTIONS = BrokerOptions(visibility_timeout=5.0, heartbeat=True)


class LedgerRunner:
    """Runs a step by writing its key to the ledger."""

    def __init__(self) -> None:
        self.ledger: list[str] = []

    def run(self, task: OpExecutionTask) -> StepOutcome:
        self.ledger.append(task.step_key)
        return StepOutcome(TaskState.COMPLETED)


def _task(step: str, **changes: object) -> OpExecutionTask:
    fields: dict[str, object] = {
        "run_id": "run-1",
        "step_key": step,
        "idempotency_key": idempotency_key("run-1", step),
        "code": CodePointer(job_name="job", module="pipelines"),
        "instance_ref": {"__class__": "InstanceRef"},
        "created_at": time.time(),
    }
    return OpExecutionTask(**{**fields, **changes})  # type: ignore[arg-type]


class Scenario:
    """A worker with ``keys`` on the test's ``main`` queue, its store, ledger and sends."""

    def __init__(self, subject: BrokerUnderTest, store: SqlIdempotencyStore) -> None:
        self.subject, self.store = subject, store
        self.sender = subject.make(subject.settings("main", OPTIONS))
        self.main = subject.settings("main", OPTIONS).step_queue()
        self.other = subject.settings("other", OPTIONS).step_queue()
        self.runner = LedgerRunner()
        self.sent = 0

    async def send(
        self,
        task: OpExecutionTask,
        key: SigningKey | None,
        *,
        signed_for: str | None = None,
        payload: str | None = None,
        attempt: int = 0,
    ) -> None:
        """``task`` signed with ``key`` for ``signed_for`` (default: main), sent to main; with
        ``payload``, that text travels under the signature instead (a forgery)."""
        self.store.ensure_pending(task)
        signer = None if key is None else MessageSigner(key)
        message = step_message(task, signer, signed_for or self.main)
        if payload is not None:
            message.args = [payload]
        message.labels[LABEL_ENQUEUE_ATTEMPT] = str(attempt)  # not a duplicate to the broker
        await self.sender.kick(self.sender.formatter.dumps(message))
        self.sent += 1

    async def run_worker(self, keys: Sequence[SigningKey]) -> Worker:
        """A worker with ``keys`` until it has handled every message sent."""
        broker = self.subject.make(self.subject.settings("main", OPTIONS))
        worker = Worker(
            broker,
            self.store,
            self.runner,
            WorkerOptions(concurrency=2, visibility_timeout=30, grace_period=1),
            verifier=MessageVerifier(keys),
        )
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + PATIENCE * 2
        while worker.processed < self.sent and time.monotonic() < deadline and not running.done():
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(running, PATIENCE)
        assert worker.processed == self.sent
        return worker

    def state(self, step: str) -> TaskState:
        record = self.store.get(idempotency_key("run-1", step))
        assert record is not None
        return record.state


@pytest.fixture
async def scenario(subject: BrokerUnderTest, tmp_path: Path) -> AsyncIterator[Scenario]:
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    made = Scenario(subject, store)
    await made.sender.startup()
    try:
        yield made
    finally:
        await made.sender.shutdown()
        store.close()


async def test_a_worker_runs_only_what_was_signed_for_its_queue(scenario: Scenario) -> None:
    real = _task("extract")
    await scenario.send(real, NEW)
    await scenario.send(_task("load"), OLD)  # the old key, still accepted during the overlap
    # a forged copy of the real task: its JSON with other code, under the real signature
    forged = real.to_json().replace('"module": "pipelines"', '"module": "attacker"')
    assert forged != real.to_json()
    await scenario.send(real, NEW, payload=forged, attempt=1)
    # a real message of another queue replayed into this one
    await scenario.send(_task("replayed"), NEW, signed_for=scenario.other)
    await scenario.send(_task("unsigned"), None)
    await scenario.send(_task("unknown_key"), STRANGER)

    worker = await scenario.run_worker([OLD, NEW])

    assert collections.Counter(scenario.runner.ledger) == {"extract": 1, "load": 1}
    assert worker.refused == {
        Refusal.BAD_SIGNATURE: 1,
        Refusal.OTHER_QUEUE: 1,
        Refusal.UNSIGNED: 1,
        Refusal.UNKNOWN_KEY: 1,
    }
    for step in ("replayed", "unsigned", "unknown_key"):
        assert scenario.state(step) is TaskState.PENDING  # never claimed
    assert scenario.state("extract") is TaskState.COMPLETED
    assert await scenario.subject.holds(0, "main")  # refused messages are deleted


async def test_after_a_rotation_the_old_key_is_refused(scenario: Scenario) -> None:
    await scenario.send(_task("old"), OLD)
    await scenario.send(_task("new"), NEW)

    worker = await scenario.run_worker([NEW])

    assert scenario.runner.ledger == ["new"]
    assert worker.refused == {Refusal.UNKNOWN_KEY: 1}
    assert scenario.state("old") is TaskState.PENDING
    assert await scenario.subject.holds(0, "main")
