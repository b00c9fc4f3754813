"""The backend helpers of ``dagster_taskiq.messaging``: step labels, identities, heartbeats."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

import structlog
from structlog.testing import capture_logs

from dagster_taskiq.brokers import heartbeat_loop, start_heartbeat, stop_heartbeat
from dagster_taskiq.messaging import (
    LABEL_ENQUEUE_ATTEMPT,
    LABEL_IDEMPOTENCY_KEY,
    LABEL_RETRY_NUMBER,
    LABEL_RUN_ID,
    deduplication_id,
    hashed_identity,
    step_labels,
    step_log_fields,
)

_log = structlog.get_logger("test_messaging_helpers")


def test_step_labels_and_log_fields() -> None:
    labels = {
        LABEL_IDEMPOTENCY_KEY: "run-1:add",
        LABEL_RUN_ID: "run-1",
        LABEL_RETRY_NUMBER: 2,
        LABEL_ENQUEUE_ATTEMPT: None,
    }
    step = step_labels(labels)
    assert step == {LABEL_IDEMPOTENCY_KEY: "run-1:add", LABEL_RETRY_NUMBER: "2"}
    assert step_log_fields(step) == {
        "key": "run-1:add",
        "retry_number": 2,
        "enqueue_attempt": None,
    }
    assert step_labels({"other": 1}) == {}
    assert step_log_fields({}) == {}


def test_hashed_identity_of_a_step_and_of_a_plain_task() -> None:
    step = {LABEL_IDEMPOTENCY_KEY: "run-1:add", LABEL_RETRY_NUMBER: "1"}
    expected = deduplication_id("run-1:add", 1, 0)
    assert hashed_identity(step, "task-9") == hashlib.sha256(expected.encode()).hexdigest()
    assert hashed_identity({}, "task-9") == hashlib.sha256(b"task-9").hexdigest()


class StopError(Exception):
    pass


async def test_heartbeat_loop_logs_failures_and_stops_on_the_stop_error() -> None:
    outcomes: list[Exception | None] = [None, RuntimeError("blip"), StopError("settled")]
    beats = 0

    async def beat() -> None:
        nonlocal beats
        beats += 1
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    with capture_logs() as logs:
        await heartbeat_loop(
            0.001,
            beat,
            stop_on=StopError,
            logger=_log,
            event_prefix="demo",
            log_fields=lambda: {"entry_id": "1-0"},
        )
    assert beats == 3
    assert logs == [
        {
            "error": "RuntimeError: blip",
            "entry_id": "1-0",
            "event": "demo_heartbeat_failed",
            "log_level": "warning",
        },
        {
            "reason": "settled",
            "entry_id": "1-0",
            "event": "demo_heartbeat_stopped",
            "log_level": "warning",
        },
    ]


@dataclasses.dataclass(eq=False)
class Held:
    broker: object
    settled: str | None = None
    heartbeat: asyncio.Task[None] | None = None

    async def ack(self) -> None:
        pass


async def test_start_and_stop_heartbeat() -> None:
    tasks: set[asyncio.Task[None]] = set()
    held = Held(broker=object())
    held.heartbeat = start_heartbeat(tasks, asyncio.sleep(60))
    task = held.heartbeat
    assert tasks == {task}
    stop_heartbeat(held)
    stop_heartbeat(held)  # idempotent
    assert held.heartbeat is None
    await asyncio.sleep(0)
    assert task.cancelled()
    await asyncio.sleep(0)  # the done callbacks run one loop turn later
    assert tasks == set()
