"""The ``nats`` backend of the ``dagster_taskiq.brokers`` entry-point group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskiq import AsyncBroker

from dagster_taskiq_nats.broker import NatsJetStreamBroker
from dagster_taskiq_nats.settings import NatsSettings

__all__ = ["create_broker"]


def create_broker(settings: Mapping[str, Any] | None = None) -> AsyncBroker:
    """A :class:`NatsJetStreamBroker` from ``settings`` (``NatsSettings`` fields by name).

    Settings not given are read from the environment (``DAGSTER_TASKIQ_NATS_*``) when this is
    called, never at import. Invalid values raise ``NatsSettingsError``.
    """
    return NatsJetStreamBroker(NatsSettings(**dict(settings or {})))
