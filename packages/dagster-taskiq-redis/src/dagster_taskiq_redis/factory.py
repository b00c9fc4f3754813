"""The ``redis`` backend of the ``dagster_taskiq.brokers`` entry-point group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskiq import AsyncBroker

from dagster_taskiq_redis.broker import RedisBroker
from dagster_taskiq_redis.settings import RedisSettings

__all__ = ["create_broker"]


def create_broker(settings: Mapping[str, Any] | None = None) -> AsyncBroker:
    """A :class:`RedisBroker` from ``settings`` (``RedisSettings`` fields by name).

    Settings not given are read from the environment (``DAGSTER_TASKIQ_REDIS_*``) when this is
    called, never at import. Invalid values raise ``RedisSettingsError``.
    """
    return RedisBroker(RedisSettings(**dict(settings or {})))
