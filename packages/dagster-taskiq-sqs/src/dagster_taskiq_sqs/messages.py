"""What an SQS message carries besides its body: the step labels as message attributes, its
size as SQS counts it, and the cutting of outgoing messages into batch requests."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import structlog
from taskiq.message import BrokerMessage

from dagster_taskiq.messaging import (
    LABEL_ENQUEUE_ATTEMPT,
    LABEL_IDEMPOTENCY_KEY,
    LABEL_RETRY_NUMBER,
    step_labels,
)
from dagster_taskiq_sqs.errors import FifoDelayError
from dagster_taskiq_sqs.message_ids import StepLabels, message_deduplication_id, message_group_id
from dagster_taskiq_sqs.queues import QueueInfo
from dagster_taskiq_sqs.settings import MAX_VISIBILITY_TIMEOUT, GroupStrategy

__all__ = [
    "BATCH_ENTRIES",
    "Outgoing",
    "batches",
    "fifo_params",
    "message_size",
    "receive_count",
    "step_attributes",
    "step_labels_of",
    "visibility_seconds",
]

_log = structlog.get_logger("dagster_taskiq_sqs")

BATCH_ENTRIES = 10
"""The most entries of one SQS batch request."""


def fifo_params(message: BrokerMessage, queue: str, strategy: GroupStrategy) -> dict[str, str]:
    """A FIFO send's ``MessageGroupId`` and ``MessageDeduplicationId``; a delay is refused (SQS
    has no per-message delay on FIFO queues)."""
    delay = message.labels.get("delay")
    if delay not in (None, 0, "0", "", 0.0):
        raise FifoDelayError(
            f"task {message.task_name!r} asks for a {delay} s delay, but queue {queue!r} is FIFO "
            f"and SQS does not support per-message delays on FIFO queues; drop the 'delay' label "
            f"or use a standard queue"
        )
    step = StepLabels(message.labels)
    return {
        "MessageGroupId": message_group_id(strategy, step, message.labels, message.task_id),
        "MessageDeduplicationId": message_deduplication_id(step, message.task_id),
    }


def receive_count(raw: Mapping[str, Any]) -> int | None:
    """A received message's ``ApproximateReceiveCount`` (None when the server did not say)."""
    value = (raw.get("Attributes") or {}).get("ApproximateReceiveCount")
    return int(value) if isinstance(value, str) and value.isdigit() else None


def step_attributes(step: StepLabels) -> dict[str, dict[str, str]]:
    """The step labels as message attributes, readable on receive without decoding the body."""
    if step.key is None:
        return {}
    attributes = {LABEL_IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": step.key}}
    for name, value in (
        (LABEL_RETRY_NUMBER, step.retry_number),
        (LABEL_ENQUEUE_ATTEMPT, step.enqueue_attempt),
    ):
        if value is not None:
            attributes[name] = {"DataType": "Number", "StringValue": str(value)}
    return attributes


def step_labels_of(message_attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """The step labels a received message carries as SQS message attributes."""
    values: dict[str, Any] = {}
    for name, attribute in (message_attributes or {}).items():
        if isinstance(attribute, Mapping) and "StringValue" in attribute:
            values[name] = attribute["StringValue"]
    return step_labels(values)


def message_size(kwargs: Mapping[str, Any]) -> int:
    """Bytes SQS counts against ``MaximumMessageSize``: the body and every message attribute."""
    size = len(kwargs["MessageBody"].encode("utf-8"))
    for name, attribute in (kwargs.get("MessageAttributes") or {}).items():
        size += len(name.encode("utf-8")) + len(attribute["DataType"].encode("utf-8"))
        size += len(attribute.get("StringValue", "").encode("utf-8"))
    return size


def visibility_seconds(seconds: float) -> int:
    """Seconds as SQS takes them: whole, rounded up, within 0-12 hours."""
    return max(0, min(MAX_VISIBILITY_TIMEOUT, math.ceil(seconds)))


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """One message ready to send: its queue, ``SendMessage`` parameters and size."""

    message: BrokerMessage
    queue: QueueInfo
    params: dict[str, Any]
    size: int
    step: StepLabels

    def log_sent(self, message_id: str | None) -> None:
        _log.debug(
            "sqs_message_sent",
            queue=self.queue.name,
            message_id=message_id,
            task_id=self.message.task_id,
            group_id=self.params.get("MessageGroupId"),
            size=self.size,
            **self.step.log_fields(),
        )


def batches(outgoing: list[Outgoing]) -> list[list[Outgoing]]:
    """``outgoing`` (one queue's) cut into batches of at most ``BATCH_ENTRIES`` entries and at
    most the queue's message size limit in all (SQS's limit for a batch's total payload)."""
    cut: list[list[Outgoing]] = []
    current: list[Outgoing] = []
    total = 0
    for item in outgoing:
        if current and (
            len(current) == BATCH_ENTRIES or total + item.size > item.queue.max_message_size
        ):
            cut.append(current)
            current, total = [], 0
        current.append(item)
        total += item.size
    if current:
        cut.append(current)
    return cut
