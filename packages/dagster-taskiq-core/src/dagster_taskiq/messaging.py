"""What core asks of a TaskIQ broker beyond ``AsyncBroker``: labels, message control, DLQ.

Core talks to an abstract ``taskiq.AsyncBroker``. A step is sent as a TaskIQ task named
:data:`STEP_TASK_NAME` whose single argument is the ``OpExecutionTask`` JSON, with the labels
below so that a broker can route, group and deduplicate it without decoding the payload.

Two optional capabilities let a backend give the exactly-once machinery more than at-least-once
delivery; a backend that lacks them still works, only with coarser recovery:

* :class:`SupportsMessageControl`: extend a received message's visibility while its step runs
  (the heartbeat) and release it at once (a worker shutting down gives a step back) instead of
  waiting for the visibility timeout.
* :class:`SupportsDeadLetters`: hand the executor the messages that a dead-letter queue received,
  so that a poisoned step becomes FAILED with a reason instead of a hung run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from taskiq.acks import AckableMessage

__all__ = [
    "LABEL_ENQUEUE_ATTEMPT",
    "LABEL_IDEMPOTENCY_KEY",
    "LABEL_QUEUE",
    "LABEL_RETRY_NUMBER",
    "LABEL_RUN_ID",
    "LABEL_STEP_KEY",
    "STEP_TASK_NAME",
    "DeadLetter",
    "MessageControl",
    "SupportsDeadLetters",
    "SupportsMessageControl",
    "deduplication_id",
]

STEP_TASK_NAME = "dagster_taskiq.execute_step"
"""The TaskIQ task name of a step; its only argument is ``OpExecutionTask.to_json()``."""

LABEL_IDEMPOTENCY_KEY = "dagster_taskiq_key"
"""``{run_id}:{step_key}``."""
LABEL_RUN_ID = "dagster_taskiq_run_id"
LABEL_STEP_KEY = "dagster_taskiq_step_key"
LABEL_RETRY_NUMBER = "dagster_taskiq_retry_number"
"""Dagster's retry number of the step (int)."""
LABEL_ENQUEUE_ATTEMPT = "dagster_taskiq_enqueue_attempt"
"""How many times this step was enqueued before for this retry number (int)."""
LABEL_QUEUE = "queue"
"""The queue to route to (op tag ``dagster-taskiq/queue``); taskiq-aio-sqs reads this label."""


def deduplication_id(key: str, retry_number: int, enqueue_attempt: int) -> str:
    """The deduplication identity of one deliberate send of a step.

    An identical resend (same key, retry number and enqueue attempt) is a duplicate; a RetryPolicy
    retry or a re-enqueue after a lost worker is a new message. Brokers hash it to their limits
    (SQS: at most 128 characters).
    """
    return f"{key}:r{retry_number}:e{enqueue_attempt}"


class MessageControl(Protocol):
    """Control of one received message, beyond ``ack``."""

    @property
    def receive_count(self) -> int | None:
        """How many times the message was received (SQS ``ApproximateReceiveCount``), if known."""
        ...

    async def extend(self, seconds: float) -> None:
        """Keep the message invisible to other consumers for ``seconds`` from now."""
        ...

    async def release(self) -> None:
        """Make the message visible to other consumers now (give it back without acking)."""
        ...


@runtime_checkable
class SupportsMessageControl(Protocol):
    """A broker that can extend and release the messages its ``listen()`` yielded."""

    def message_control(self, message: AckableMessage) -> MessageControl | None:
        """The control of ``message``, or None if the message did not come from this broker."""
        ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A message taken from a dead-letter queue."""

    body: bytes
    """The raw message, as ``listen()`` would have yielded it (``AckableMessage.data``)."""
    receive_count: int | None
    """How many times the message was received before it was dead-lettered, if known."""
    message_id: str | None
    ack: Callable[[], Awaitable[None]]
    """Delete it from the dead-letter queue once it has been handled."""


@runtime_checkable
class SupportsDeadLetters(Protocol):
    """A broker that can hand over what its dead-letter queue received."""

    async def receive_dead_letters(self, max_messages: int = 10) -> list[DeadLetter]:
        """Up to ``max_messages`` dead letters (may be empty); each stays until its ``ack``."""
        ...
