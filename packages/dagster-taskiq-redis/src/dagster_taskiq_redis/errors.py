"""The exceptions of ``dagster_taskiq_redis``: one root, :class:`DagsterTaskIQRedisError`."""

from __future__ import annotations

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
]


class DagsterTaskIQRedisError(BrokerError):
    """Root of every error raised by the Redis Streams broker."""


class RedisSettingsError(DagsterTaskIQRedisError, SettingsError):
    """``RedisSettings`` got invalid values; each problem names the setting and its variable."""

    service = "Redis"


class RedisUnavailableError(DagsterTaskIQRedisError, BrokerUnavailableError):
    """Redis could not be reached within the retry budget."""
