"""The ``rabbitmq`` backend of the ``dagster_taskiq.brokers`` entry-point group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskiq import AsyncBroker

from dagster_taskiq_rabbitmq.broker import RabbitMqBroker
from dagster_taskiq_rabbitmq.settings import RabbitMqSettings

__all__ = ["create_broker"]


def create_broker(settings: Mapping[str, Any] | None = None) -> AsyncBroker:
    """A :class:`RabbitMqBroker` from ``settings`` (``RabbitMqSettings`` fields by name).

    Settings not given are read from the environment (``DAGSTER_TASKIQ_RABBITMQ_*``) when this
    is called, never at import. Invalid values raise ``RabbitMqSettingsError``.
    """
    return RabbitMqBroker(RabbitMqSettings(**dict(settings or {})))
