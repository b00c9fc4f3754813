"""The exceptions of ``dagster_taskiq_redis``: one root, :class:`DagsterTaskIQRedisError`."""

from __future__ import annotations

import dataclasses

from dagster_taskiq.errors import DagsterTaskIQError

__all__ = [
    "AckError",
    "DagsterTaskIQRedisError",
    "RedisSettingsError",
    "RedisUnavailableError",
    "SettingProblem",
]


class DagsterTaskIQRedisError(DagsterTaskIQError):
    """Root of every error raised by the Redis Streams broker."""


@dataclasses.dataclass(frozen=True)
class SettingProblem:
    """One invalid setting: the field, the environment variable it is read from, why."""

    field: str
    env_var: str
    message: str

    def __str__(self) -> str:
        return f"{self.field} ({self.env_var}): {self.message}"


class RedisSettingsError(DagsterTaskIQRedisError, ValueError):
    """``RedisSettings`` got invalid values; each problem names the setting and its variable."""

    def __init__(self, problems: list[SettingProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"invalid Redis settings:\n{lines}")


class RedisUnavailableError(DagsterTaskIQRedisError):
    """Redis could not be reached within the retry budget."""


class AckError(DagsterTaskIQRedisError):
    """A message was settled twice, or is no longer pending for this consumer."""
