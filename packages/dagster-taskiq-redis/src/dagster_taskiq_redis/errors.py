"""The exceptions of ``dagster_taskiq_redis``: one root, :class:`DagsterTaskIQRedisError`."""

from __future__ import annotations

from dagster_taskiq.errors import DagsterTaskIQError, SettingProblem, SettingsError

__all__ = [
    "AckError",
    "DagsterTaskIQRedisError",
    "RedisSettingsError",
    "RedisUnavailableError",
    "SettingProblem",
]


class DagsterTaskIQRedisError(DagsterTaskIQError):
    """Root of every error raised by the Redis Streams broker."""


class RedisSettingsError(DagsterTaskIQRedisError, SettingsError):
    """``RedisSettings`` got invalid values; each problem names the setting and its variable."""

    service = "Redis"


class RedisUnavailableError(DagsterTaskIQRedisError):
    """Redis could not be reached within the retry budget."""


class AckError(DagsterTaskIQRedisError):
    """A message was settled twice, or is no longer pending for this consumer."""
