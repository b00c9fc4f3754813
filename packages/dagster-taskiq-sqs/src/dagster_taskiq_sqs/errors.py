"""The exception hierarchy of ``dagster_taskiq_sqs``: one root, :class:`DagsterTaskIQSqsError`."""

from __future__ import annotations

from dagster_taskiq.errors import (
    AckError,
    BrokerConfigurationError,
    BrokerError,
    BrokerUnavailableError,
    SettingProblem,
    SettingsError,
)

__all__ = [
    "AckError",
    "DagsterTaskIQSqsError",
    "FifoDelayError",
    "MessageTooLargeError",
    "QueueConfigurationError",
    "QueueNotFoundError",
    "SettingProblem",
    "SqsSettingsError",
    "SqsUnavailableError",
]


class DagsterTaskIQSqsError(BrokerError):
    """Root of every error raised by the SQS broker."""


class SqsSettingsError(DagsterTaskIQSqsError, SettingsError):
    """``SqsSettings`` got invalid values; each problem names the setting and its variable."""

    service = "SQS"


class SqsUnavailableError(DagsterTaskIQSqsError, BrokerUnavailableError):
    """The SQS endpoint could not be reached within the retry budget."""


class QueueNotFoundError(DagsterTaskIQSqsError):
    """The queue does not exist and the settings do not allow creating it."""


class QueueConfigurationError(DagsterTaskIQSqsError, BrokerConfigurationError):
    """An existing queue's attributes disagree with the settings."""


class MessageTooLargeError(DagsterTaskIQSqsError, ValueError):
    """A message is bigger than its queue's ``MaximumMessageSize``; it was not sent."""

    def __init__(self, *, queue: str, size: int, limit: int, task_name: str) -> None:
        self.queue = queue
        self.size = size
        self.limit = limit
        super().__init__(
            f"message of task {task_name!r} is {size} bytes, over the MaximumMessageSize of "
            f"queue {queue!r} ({limit} bytes); it was not sent. Keep large inputs out of the "
            f"message (Dagster passes outputs through IO managers, not messages)."
        )


class FifoDelayError(DagsterTaskIQSqsError, ValueError):
    """A per-message delay was asked for on a FIFO queue, which SQS does not support."""
