"""Signing end to end (``docs/security.md``): a forged step message naming a real run of a real
job runs its op on a worker without keys; with the executor's ``signing_key`` on the workers it
is refused, and a signed run beside it succeeds undisturbed. The op writes each run it runs for
to a ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from dagster import reconstructable

import harness_jobs
from dagster_taskiq import (
    MessageSigner,
    OpExecutionTask,
    Refusal,
    SigningKey,
    idempotency_key,
)
from dagster_taskiq.backends import create_broker
from dagster_taskiq.code_locations import pointer_for_job
from dagster_taskiq.executor._broker_thread import step_message
from dagster_taskiq.instances import instance_ref_payload
from dagster_taskiq_testing import InProcessTaskIQ

KEY = f"2026-12:{'k' * 40}"
STRANGER = SigningKey.parse(f"elsewhere:{'x' * 40}", source="test")


def _forge(taskiq: InProcessTaskIQ, key: SigningKey | None) -> str:
    """A step message for a new run of ``ledgered``, as someone who can write to the queue
    (not the executor) would send it, signed with ``key`` or not; returns the run id. Its step
    is pending in the store, as a step waiting for a worker is (a worker runs only those)."""
    assert taskiq.instance is not None
    assert taskiq.store is not None
    run = taskiq.instance.create_run_for_job(harness_jobs.ledgered)
    task = OpExecutionTask(
        run_id=run.run_id,
        step_key="write_ledger",
        idempotency_key=idempotency_key(run.run_id, "write_ledger"),
        code=pointer_for_job(reconstructable(harness_jobs.ledgered)),
        instance_ref=instance_ref_payload(taskiq.instance),
        created_at=time.time(),
    )
    taskiq.store.ensure_pending(task)
    broker = create_broker("memory", taskiq.settings())

    async def send() -> None:
        await broker.startup()
        try:
            signer = None if key is None else MessageSigner(key)
            message = step_message(task, signer, broker.step_queue())  # type: ignore[attr-defined]
            await broker.kick(broker.formatter.dumps(message))
        finally:
            await broker.shutdown()

    asyncio.run(send())
    return run.run_id


def _wait(until: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not until() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert until()


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger"
    path.touch()
    monkeypatch.setenv(harness_jobs.LEDGER_ENV, str(path))
    return path


def test_without_a_key_a_forged_message_runs_the_op(
    dagster_taskiq: Callable[..., InProcessTaskIQ], ledger: Path
) -> None:
    with dagster_taskiq(modules=["harness_jobs"], workers=1) as taskiq:
        forged_run = _forge(taskiq, None)
        _wait(lambda: taskiq.processed >= 1)
    assert ledger.read_text().split() == [forged_run]


def test_with_a_key_forged_messages_are_refused_and_a_signed_run_succeeds(
    dagster_taskiq: Callable[..., InProcessTaskIQ], ledger: Path
) -> None:
    with dagster_taskiq(modules=["harness_jobs"], signing_key=KEY) as taskiq:
        _forge(taskiq, None)
        _forge(taskiq, STRANGER)
        result = taskiq.execute(harness_jobs.ledgered)
        _wait(lambda: sum(taskiq.refused.values()) == 2)
        refused = taskiq.refused
    assert result.success
    assert ledger.read_text().split() == [result.run_id]
    assert refused == {Refusal.UNSIGNED: 1, Refusal.UNKNOWN_KEY: 1}
