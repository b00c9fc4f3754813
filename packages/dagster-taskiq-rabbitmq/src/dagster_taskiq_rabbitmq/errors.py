"""The exceptions of ``dagster_taskiq_rabbitmq`` (one root, :class:`DagsterTaskIQRabbitMqError`)
and the predicate of the failures worth retrying.

Each subclasses its kind in core's one family (:mod:`dagster_taskiq.errors`); ``AckError`` is
core's, used as is.
"""

from __future__ import annotations

import asyncio

from aiormq import exceptions as amqp

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
    "DagsterTaskIQRabbitMqError",
    "QueueReturnedError",
    "RabbitMqConfigurationError",
    "RabbitMqSettingsError",
    "RabbitMqUnavailableError",
    "SettingProblem",
    "is_transient",
]


class DagsterTaskIQRabbitMqError(BrokerError):
    """Root of every error raised by the RabbitMQ broker."""


class RabbitMqSettingsError(DagsterTaskIQRabbitMqError, SettingsError):
    """``RabbitMqSettings`` got invalid values; each problem names the setting and its variable."""

    service = "RabbitMQ"


class RabbitMqUnavailableError(DagsterTaskIQRabbitMqError, BrokerUnavailableError):
    """RabbitMQ could not be reached within the retry budget."""


class RabbitMqConfigurationError(DagsterTaskIQRabbitMqError, BrokerConfigurationError):
    """An existing queue was declared with other arguments than the settings ask for."""


class QueueReturnedError(DagsterTaskIQRabbitMqError, ConnectionError):
    """RabbitMQ returned or refused a published message (its queue was deleted after this broker
    declared it): transient, the retry declares the queue again and publishes once more."""


# Refusals that no retry changes: wrong credentials, a vhost the user may not use, a server
# that does not speak AMQP 0-9-1.
_PERMANENT = (
    amqp.AuthenticationError,
    amqp.ProbableAuthenticationError,
    amqp.IncompatibleProtocolError,
    amqp.ConnectionNotAllowed,
)
_TRANSIENT = (
    amqp.AMQPConnectionError,  # refused, reset, closed by the server (also ConnectionError)
    amqp.ChannelInvalidStateError,  # a channel of a connection that is gone
    QueueReturnedError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: RabbitMQ is unreachable, the connection or its channel closed under the
    call, or the answer did not come in time. A refusal (credentials, vhost, a queue declared
    with other arguments: ``PRECONDITION_FAILED``) is raised at once."""
    if isinstance(exc, _PERMANENT):
        return False
    # A bare ChannelClosed is a channel closed under the call (its connection dropped); its
    # subclasses are the server's refusals (precondition failed, not found, access refused).
    if type(exc) is amqp.ChannelClosed or isinstance(exc, _TRANSIENT):
        return True
    # aiormq 7 refuses a channel on a connection it has just lost with RuntimeError("<...> closed")
    return type(exc) is RuntimeError and str(exc).endswith(" closed")
