"""What core asks of a TaskIQ broker beyond ``AsyncBroker``: labels, message control, DLQ.

Core talks to an abstract ``taskiq.AsyncBroker``. A step is sent as a TaskIQ task named
:data:`STEP_TASK_NAME` whose single argument is the ``OpExecutionTask`` JSON, with the labels
below so that a broker can route, group and deduplicate it without decoding the payload.

Optional capabilities let a backend give the exactly-once machinery more than at-least-once
delivery, or send for less; a backend that lacks them still works, only with coarser recovery
or more requests:

* :class:`SupportsMessageControl`: extend a received message's visibility while its step runs
  (the heartbeat) and release it at once (a worker shutting down gives a step back) instead of
  waiting for the visibility timeout.
* :class:`SupportsDeadLetters`: hand the executor the messages that a dead-letter queue received,
  so that a poisoned step becomes FAILED with a reason instead of a hung run.
* :class:`SupportsBatchSend`: send the steps that became ready together in batch requests.
* :class:`SupportsReceiveLimit`: receive as many messages at once as the worker has free slots.
* :class:`SupportsOrigin`: name the queue a message was sent to and received from, so that
  signed messages (``dagster_taskiq.signing``) are bound to their queue.
* :class:`SupportsQueueDepth`: say how many messages wait in the queues it reads (the worker's
  ``dagster_taskiq_queue_depth`` metric; a failed look makes the worker not ready).

The helpers at the end are shared by the backends that carry the step labels as message fields
or headers; what every backend does with a received message is in :mod:`dagster_taskiq.brokers`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage

__all__ = [
    "LABEL_ENQUEUE_ATTEMPT",
    "LABEL_IDEMPOTENCY_KEY",
    "LABEL_QUEUE",
    "LABEL_RETRY_NUMBER",
    "LABEL_RUN_ID",
    "LABEL_STEP_KEY",
    "STEP_LABELS",
    "STEP_TASK_NAME",
    "DeadLetter",
    "MessageControl",
    "Origin",
    "SupportsBatchSend",
    "SupportsDeadLetters",
    "SupportsMessageControl",
    "SupportsOrigin",
    "SupportsQueueDepth",
    "SupportsReceiveLimit",
    "deduplication_id",
    "hashed_identity",
    "step_labels",
    "step_log_fields",
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
STEP_LABELS = (LABEL_IDEMPOTENCY_KEY, LABEL_RETRY_NUMBER, LABEL_ENQUEUE_ATTEMPT)
"""The labels a broker keeps beside the message body (fields, headers) to log and dedupe it."""


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

    async def extend_lease(self, seconds: float) -> None:
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


@runtime_checkable
class SupportsBatchSend(Protocol):
    """A broker that sends several messages in fewer requests (SQS's ``SendMessageBatch``):
    a wide fan-out then costs the broker a request per ten steps, not one per step."""

    async def kick_batch(self, messages: Sequence[BrokerMessage]) -> None:
        """Send every message of ``messages`` (as ``kick`` would, each exactly so)."""
        ...


@runtime_checkable
class SupportsReceiveLimit(Protocol):
    """A broker whose receives can bring several messages at once (SQS's
    ``MaxNumberOfMessages``): the consumer says how many it could start now, so that a receive
    takes no more than that (a message taken and not started would wait, invisible to other
    workers) and a worker with several free slots fills them in one request."""

    def limit_receives(self, startable: Callable[[], int]) -> None:
        """From now on, a receive asks for at most ``startable()`` messages (and at least one,
        and no more than the broker's own setting)."""
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


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a received message came from."""

    queue: str
    """The queue it was received from, named as a sender names it (``BrokerSettings.step_queue``:
    SQS queue name, Redis stream, NATS subject, RabbitMQ queue)."""
    message_id: str | None


@runtime_checkable
class SupportsOrigin(Protocol):
    """A broker that names queues as senders do, and says where a received message came from."""

    def step_queue(self, label: object = None) -> str:
        """The queue a message with ``queue`` label ``label`` (None: none) is sent to."""
        ...

    def origin(self, message: AckableMessage) -> Origin | None:
        """Where a message this broker's ``listen()`` yielded and holds came from (else None)."""
        ...


@runtime_checkable
class SupportsQueueDepth(Protocol):
    """A broker that can say how many messages wait in the queues it reads."""

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting to be received (not held by a consumer), by queue (as
        ``SupportsOrigin.step_queue`` names it): SQS ``ApproximateNumberOfMessages``, the Redis
        group's lag, the JetStream consumer's pending count, RabbitMQ's ready messages."""
        ...


# --- helpers for backends ----------------------------------------------------------------------


def step_labels(labels: Mapping[str, Any]) -> dict[str, str]:
    """The :data:`STEP_LABELS` of a message that has them, as text (none for a plain task)."""
    return {name: str(labels[name]) for name in STEP_LABELS if labels.get(name) is not None}


def step_log_fields(step: Mapping[str, str]) -> dict[str, Any]:
    """``key``, ``retry_number`` and ``enqueue_attempt`` of a step's labels (none without a key);
    the two numbers as ints, as every backend logs them."""
    if LABEL_IDEMPOTENCY_KEY not in step:
        return {}
    return {
        "key": step[LABEL_IDEMPOTENCY_KEY],
        "retry_number": _number(step.get(LABEL_RETRY_NUMBER)),
        "enqueue_attempt": _number(step.get(LABEL_ENQUEUE_ATTEMPT)),
    }


def _number(text: str | None) -> int | str | None:
    return int(text) if text is not None and text.isdigit() else text


def hashed_identity(step: Mapping[str, str], task_id: str) -> str:
    """SHA-256 (hex) of the step's :func:`deduplication_id`, or of ``task_id`` for a plain task."""
    identity = (
        deduplication_id(
            step[LABEL_IDEMPOTENCY_KEY],
            int(step.get(LABEL_RETRY_NUMBER, 0)),
            int(step.get(LABEL_ENQUEUE_ATTEMPT, 0)),
        )
        if LABEL_IDEMPOTENCY_KEY in step
        else task_id
    )
    return hashlib.sha256(identity.encode()).hexdigest()
