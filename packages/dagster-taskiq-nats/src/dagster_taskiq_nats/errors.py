"""The exceptions of ``dagster_taskiq_nats``: one root, :class:`DagsterTaskIQNatsError`."""

from __future__ import annotations

import dataclasses

from dagster_taskiq.errors import DagsterTaskIQError

__all__ = [
    "AckError",
    "DagsterTaskIQNatsError",
    "NatsConfigurationError",
    "NatsSettingsError",
    "NatsUnavailableError",
    "SettingProblem",
]


class DagsterTaskIQNatsError(DagsterTaskIQError):
    """Root of every error raised by the NATS JetStream broker."""


@dataclasses.dataclass(frozen=True)
class SettingProblem:
    """One invalid setting: the field, the environment variable it is read from, why."""

    field: str
    env_var: str
    message: str

    def __str__(self) -> str:
        return f"{self.field} ({self.env_var}): {self.message}"


class NatsSettingsError(DagsterTaskIQNatsError, ValueError):
    """``RedisSettings`` got invalid values; each problem names the setting and its variable."""

    def __init__(self, problems: list[SettingProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"invalid NATS settings:\n{lines}")


class NatsUnavailableError(DagsterTaskIQNatsError):
    """NATS could not be reached within the retry budget."""


class NatsConfigurationError(DagsterTaskIQNatsError):
    """An existing stream or consumer disagrees with the settings."""


class AckError(DagsterTaskIQNatsError):
    """A message was settled twice, or could not be settled with the server."""
