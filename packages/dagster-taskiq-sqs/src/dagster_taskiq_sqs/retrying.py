"""Calls to SQS that ride out an unreachable endpoint: stamina's jittered exponential backoff.

Only transient failures are retried (the connection, timeouts, throttling, SQS's own 5xx); a
missing queue or a bad parameter is raised at once. Every retry is logged (``sqs_retry``) with
the operation, endpoint, queue, attempt and error; when the budget runs out the caller gets a
:class:`~dagster_taskiq_sqs.errors.SqsUnavailableError` that names the endpoint and the queue.
The budget bounds the time: at most ``timeout`` plus one backoff plus one call. The retry loop
is the core's :func:`dagster_taskiq.retrying.call_with_retry`; this module gives it the
predicate and names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import structlog
from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    ConnectionError as BotoConnectionError,
)

from dagster_taskiq import retrying
from dagster_taskiq_sqs.errors import SqsUnavailableError
from dagster_taskiq_sqs.settings import RetryBudget

__all__ = ["TRANSIENT_ERROR_CODES", "SqsCaller", "call_with_retry", "error_code", "is_transient"]

_T = TypeVar("_T")
_log = structlog.get_logger("dagster_taskiq_sqs")

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


async def call_with_retry(
    operation: str,
    call: Callable[[], Awaitable[_T]],
    *,
    budget: RetryBudget,
    endpoint: str,
    queue: str,
    **log_fields: Any,
) -> _T:
    """``await call()``, retrying transient failures within ``budget`` (the core's helper)."""
    return await retrying.call_with_retry(
        operation,
        call,
        budget=budget,
        is_transient=is_transient,
        logger=_log,
        event_prefix="sqs",
        target={"endpoint": endpoint, "queue": queue},
        unreachable=f"SQS endpoint {endpoint} unreachable for queue {queue!r}",
        error=SqsUnavailableError,
        log_fields=log_fields,
    )


class SqsCaller:
    """Calls one SQS client's operations by name, each with :func:`call_with_retry`."""

    def __init__(self, client: Any, *, budget: RetryBudget, endpoint: str) -> None:
        self.client = client
        self.budget = budget
        self.endpoint = endpoint

    async def __call__(
        self, operation: str, queue: str, log_fields: dict[str, Any] | None = None, **params: Any
    ) -> dict[str, Any]:
        """``client.<operation>(**params)`` with retries; ``queue`` names it in logs and errors."""
        method = getattr(self.client, operation)

        async def call() -> dict[str, Any]:
            response: dict[str, Any] = await method(**params)
            return response

        return await call_with_retry(
            operation,
            call,
            budget=self.budget,
            endpoint=self.endpoint,
            queue=queue,
            **(log_fields or {}),
        )
