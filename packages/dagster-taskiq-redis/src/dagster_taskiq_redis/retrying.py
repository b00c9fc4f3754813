"""Calls to Redis that ride out an unreachable server: stamina's jittered exponential backoff.

Only transient failures are retried (connection refused or reset, timeouts, a server still
loading its data, a read-only replica after a failover); a wrong type or a script error is raised
at once. Every retry is logged (``redis_retry``) with the operation, server, stream, attempt and
error; when the budget runs out the caller gets a
:class:`~dagster_taskiq_redis.errors.RedisUnavailableError` naming the server and the stream.
redis-py's own retries are off (the pool is built with zero retries), so this is the one layer.
The retry loop is the core's :func:`dagster_taskiq.retrying.call_with_retry`; this module gives
it the predicate and names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from redis import exceptions as redis_errors

from dagster_taskiq import retrying
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
    """``await call()``, retrying transient failures within ``budget`` (the core's helper)."""
    return await retrying.call_with_retry(
        operation,
        call,
        budget=budget,
        is_transient=is_transient,
        logger=_log,
        event_prefix="redis",
        target={"server": server, "stream": stream},
        unreachable=f"Redis at {server} unreachable for stream {stream!r}",
        error=RedisUnavailableError,
        log_fields=log_fields,
    )
