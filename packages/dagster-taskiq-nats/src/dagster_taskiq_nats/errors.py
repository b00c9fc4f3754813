"""The exceptions of ``dagster_taskiq_nats``: one root, :class:`DagsterTaskIQNatsError`."""

from __future__ import annotations

from dagster_taskiq.errors import (
    AckError,
    BrokerConfigurationError,
    BrokerError,
    BrokerUnavailableError,
    SettingProblem,
    SettingsError,
)

__all__ = [
    "AckError",
    "DagsterTaskIQNatsError",
    "NatsConfigurationError",
    "NatsSettingsError",
    "NatsUnavailableError",
    "SettingProblem",
]


class DagsterTaskIQNatsError(BrokerError):
    """Root of every error raised by the NATS JetStream broker."""


class NatsSettingsError(DagsterTaskIQNatsError, SettingsError):
    """``NatsSettings`` got invalid values; each problem names the setting and its variable."""

    service = "NATS"


class NatsUnavailableError(DagsterTaskIQNatsError, BrokerUnavailableError):
    """NATS could not be reached within the retry budget."""


class NatsConfigurationError(DagsterTaskIQNatsError, BrokerConfigurationError):
    """An existing stream or consumer disagrees with the settings."""
