"""The exceptions of ``dagster_taskiq_sqs`` (one root, ``DagsterTaskIQSqsError``), and which of
SQS's failures are transient: worth retrying within the budget (the connection, timeouts,
throttling, SQS's own 5xx); a missing queue or a bad parameter is not."""

from __future__ import annotations

import asyncio

import aiohttp
from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    ConnectionError as BotoConnectionError,
)

from dagster_taskiq.errors import (
    AckError,
    BrokerConfigurationError,
    BrokerError,
    BrokerUnavailableError,
    SettingProblem,
    SettingsError,
)

__all__ = [
    "TRANSIENT_ERROR_CODES",
    "AckError",
    "DagsterTaskIQSqsError",
    "FifoDelayError",
    "MessageTooLargeError",
    "QueueConfigurationError",
    "QueueNotFoundError",
    "SettingProblem",
    "SqsSettingsError",
    "SqsUnavailableError",
    "error_code",
    "is_transient",
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


TRANSIENT_ERROR_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestThrottled",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "KmsThrottled",
        "SlowDown",
        "AWS.SimpleQueueService.ServiceUnavailable",
    }
)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ``ClientError``, else None."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the endpoint is unreachable, slow, throttling or failing on its side."""
    if isinstance(exc, BotoConnectionError | HTTPClientError | aiohttp.ClientError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in TRANSIENT_ERROR_CODES or int(status) >= 500
    return isinstance(exc, OSError | asyncio.TimeoutError)
