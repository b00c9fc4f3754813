"""FIFO ``MessageGroupId`` and ``MessageDeduplicationId`` of a message, from its labels.

Both ids allow 1-128 characters of ASCII letters, digits and punctuation. A value that fits is
used as it is (readable in the console and the logs); one that does not is made to fit: its
allowed characters, cut short, then ``-`` and the SHA-256 of the whole value, so two different
values never share an id.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from typing import Any

from dagster_taskiq.messaging import (
    LABEL_ENQUEUE_ATTEMPT,
    LABEL_IDEMPOTENCY_KEY,
    LABEL_RETRY_NUMBER,
    LABEL_RUN_ID,
    deduplication_id,
)
from dagster_taskiq_sqs.settings import GroupStrategy

__all__ = [
    "SINGLE_GROUP_ID",
    "StepLabels",
    "message_deduplication_id",
    "message_group_id",
    "sqs_id",
]

MAX_ID_LENGTH = 128
SINGLE_GROUP_ID = "dagster-taskiq"
_ALLOWED = frozenset(string.ascii_letters + string.digits + string.punctuation)
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]")
_HASH_LENGTH = 64


def sqs_id(value: str) -> str:
    """``value`` if SQS accepts it as a group or deduplication id, else a fitting unique form."""
    if 0 < len(value) <= MAX_ID_LENGTH and _ALLOWED.issuperset(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    readable = _NOT_ALLOWED.sub("_", value)[: MAX_ID_LENGTH - _HASH_LENGTH - 1]
    return f"{readable}-{digest}" if readable else digest


class StepLabels:
    """The dagster-taskiq labels of a message (all None for a plain TaskIQ task)."""

    __slots__ = ("enqueue_attempt", "key", "retry_number", "run_id")

    def __init__(self, labels: Mapping[str, Any]) -> None:
        key = labels.get(LABEL_IDEMPOTENCY_KEY)
        self.key: str | None = str(key) if key is not None else None
        run_id = labels.get(LABEL_RUN_ID)
        self.run_id: str | None = str(run_id) if run_id is not None else None
        self.retry_number = _int_or_none(labels.get(LABEL_RETRY_NUMBER))
        self.enqueue_attempt = _int_or_none(labels.get(LABEL_ENQUEUE_ATTEMPT))

    @property
    def is_step(self) -> bool:
        return self.key is not None

    def log_fields(self) -> dict[str, Any]:
        """``key``, ``retry_number`` and ``enqueue_attempt`` when present."""
        fields: dict[str, Any] = {}
        if self.key is not None:
            fields["key"] = self.key
            fields["retry_number"] = self.retry_number
            fields["enqueue_attempt"] = self.enqueue_attempt
        return fields


def message_group_id(
    strategy: GroupStrategy, step: StepLabels, labels: Mapping[str, Any], task_id: str
) -> str:
    """The FIFO group of a message under ``strategy``.

    A step's group is its idempotency key (``per_step``) or its run (``per_run``). A plain
    TaskIQ task keeps an explicit ``group_id`` label if it has one, else gets its own group (its
    task id): never the task name, which would deliver every task of that name one at a time.
    """
    if strategy is GroupStrategy.SINGLE:
        return SINGLE_GROUP_ID
    if strategy is GroupStrategy.PER_RUN and step.run_id is not None:
        return sqs_id(step.run_id)
    if step.key is not None:
        return sqs_id(step.key)
    explicit = labels.get("group_id")
    if explicit is not None and str(explicit):
        return sqs_id(str(explicit))
    return sqs_id(task_id)


def message_deduplication_id(step: StepLabels, task_id: str) -> str:
    """SHA-256 (hex) of the step's :func:`~dagster_taskiq.messaging.deduplication_id`.

    An identical resend of a step (same key, retry number and enqueue attempt) gets the same id
    and SQS drops it; a retry or a deliberate re-enqueue gets a new one. A plain TaskIQ task is
    deduplicated on its task id (a fresh UUID unless the sender chose one).
    """
    if step.key is not None:
        identity = deduplication_id(step.key, step.retry_number or 0, step.enqueue_attempt or 0)
        return hashlib.sha256(identity.encode("utf-8")).hexdigest()
    return sqs_id(task_id)


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
