"""The exceptions of ``dagster_taskiq_redis`` (one root, ``DagsterTaskIQRedisError``), and which
of Redis's own are transient: worth retrying within the budget (connection refused or reset,
timeouts, a server still loading its data, a read-only replica after a failover). redis-py's own
retries are off (the pool is built with zero retries): ``dagster_taskiq.retrying`` is the one
layer."""

from __future__ import annotations

import asyncio

from redis import exceptions as redis_errors

from dagster_taskiq.errors import (
    AckError,
    BrokerError,
    BrokerUnavailableError,
    SettingProblem,
    SettingsError,
)

__all__ = [
    "AckError",
    "DagsterTaskIQRedisError",
    "RedisSettingsError",
    "RedisUnavailableError",
    "SettingProblem",
    "is_transient",
]


class DagsterTaskIQRedisError(BrokerError):
    """Root of every error raised by the Redis Streams broker."""


class RedisSettingsError(DagsterTaskIQRedisError, SettingsError):
    """``RedisSettings`` got invalid values; each problem names the setting and its variable."""

    service = "Redis"


class RedisUnavailableError(DagsterTaskIQRedisError, BrokerUnavailableError):
    """Redis could not be reached within the retry budget."""


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
