"""The exceptions of ``dagster_taskiq_nats`` (one root, ``DagsterTaskIQNatsError``), and which of
NATS's own are transient: worth retrying within the budget (no server reachable, a connection
closed or reconnecting, a request without an answer in time, JetStream not ready: no responders
or 503). nats-py reconnects a lost connection by itself; the retries cover the calls made
meanwhile."""

from __future__ import annotations

import asyncio

from nats import errors as nats_errors
from nats.js import errors as js_errors

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
    "DisconnectedError",
    "NatsConfigurationError",
    "NatsSettingsError",
    "NatsUnavailableError",
    "SettingProblem",
    "is_transient",
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


_TRANSIENT = (
    nats_errors.TimeoutError,
    nats_errors.NoRespondersError,
    nats_errors.NoServersError,
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.StaleConnectionError,
    nats_errors.OutboundBufferLimitError,
    js_errors.ServiceUnavailableError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


class DisconnectedError(ConnectionError):
    """The client is not connected to any server (nats-py is reconnecting)."""


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: NATS is unreachable, reconnecting, slow, or JetStream is not ready."""
    if isinstance(exc, js_errors.APIError) and exc.code in {503, 504}:
        return True
    return isinstance(exc, _TRANSIENT)
