"""Calls to Redis that ride out an unreachable server: stamina's jittered exponential backoff.

Only transient failures are retried (connection refused or reset, timeouts, a server still
loading its data, a read-only replica after a failover); a wrong type or a script error is raised
at once. Every retry is logged (``redis_retry``) with the operation, server, stream, attempt and
error; when the budget runs out the caller gets a
:class:`~dagster_taskiq_redis.errors.RedisUnavailableError` naming the server and the stream.
redis-py's own retries are off (the pool is built with zero retries), so this is the one layer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import stamina
import structlog
from redis import exceptions as redis_errors

from dagster_taskiq_redis.errors import RedisUnavailableError
from dagster_taskiq_redis.settings import RetryBudget

__all__ = ["call_with_retry", "is_transient"]

_T = TypeVar("_T")
_log = structlog.get_logger("dagster_taskiq_redis")

_TRANSIENT = (
    redis_errors.ConnectionError,  # includes BusyLoadingError
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.TryAgainError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: Redis is unreachable, slow, loading or failing over."""
    if isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(
        ("LOADING", "MASTERDOWN", "TRYAGAIN")
    ):
        return True
    return isinstance(exc, _TRANSIENT)


async def call_with_retry(
    operation: str,
    call: Callable[[], Awaitable[_T]],
    *,
    budget: RetryBudget,
    server: str,
    stream: str,
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
                            "redis_retry",
                            operation=operation,
                            server=server,
                            stream=stream,
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
            "redis_unavailable",
            operation=operation,
            server=server,
            stream=stream,
            attempts=attempts_made,
            elapsed=round(elapsed, 3),
            error=f"{type(exc).__name__}: {exc}",
            **log_fields,
        )
        raise RedisUnavailableError(
            f"Redis at {server} unreachable for stream {stream!r} ({operation}): gave up after "
            f"{attempts_made} attempt(s) in {elapsed:.1f} s (budget: {budget.attempts} attempts, "
            f"{budget.timeout:g} s; settings retry_attempts / retry_timeout). Last error: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover
