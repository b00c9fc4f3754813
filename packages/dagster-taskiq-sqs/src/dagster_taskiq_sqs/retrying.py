"""Calls to SQS that ride out an unreachable endpoint: stamina's jittered exponential backoff.

Only transient failures are retried (the connection, timeouts, throttling, SQS's own 5xx); a
missing queue or a bad parameter is raised at once. Every retry is logged (``sqs_retry``) with
the operation, endpoint, queue, attempt and error; when the budget runs out the caller gets a
:class:`~dagster_taskiq_sqs.errors.SqsUnavailableError` that names the endpoint and the queue.
The budget bounds the time: at most ``timeout`` plus one backoff plus one call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import stamina
import structlog
from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    ConnectionError as BotoConnectionError,
)

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
    """``await call()``, retrying transient failures within ``budget``."""
    started = time.monotonic()
    attempts_made = 0
    try:
        async for attempt in stamina.retry_context(
            on=is_transient,
            attempts=budget.attempts,
            timeout=budget.timeout,
            wait_initial=budget.initial_delay,
            wait_max=budget.max_delay,
            wait_jitter=budget.jitter,
        ):
            with attempt:
                attempts_made = attempt.num
                try:
                    return await call()
                except Exception as exc:
                    elapsed = time.monotonic() - started
                    if (
                        is_transient(exc)
                        and attempt.num < budget.attempts
                        and elapsed < budget.timeout
                    ):
                        _log.warning(
                            "sqs_retry",
                            operation=operation,
                            endpoint=endpoint,
                            queue=queue,
                            attempt=attempt.num,
                            next_wait=round(attempt.next_wait, 3),
                            error=f"{type(exc).__name__}: {exc}",
                            **log_fields,
                        )
                    raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        elapsed = time.monotonic() - started
        _log.error(
            "sqs_unavailable",
            operation=operation,
            endpoint=endpoint,
            queue=queue,
            attempts=attempts_made,
            elapsed=round(elapsed, 3),
            error=f"{type(exc).__name__}: {exc}",
            **log_fields,
        )
        raise SqsUnavailableError(
            f"SQS endpoint {endpoint} unreachable for queue {queue!r} ({operation}): gave up "
            f"after {attempts_made} attempt(s) in {elapsed:.1f} s (budget: "
            f"{budget.attempts} attempts, {budget.timeout:g} s; settings retry_attempts / "
            f"retry_timeout). Last error: {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover


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
