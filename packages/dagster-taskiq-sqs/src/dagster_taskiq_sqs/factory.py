"""The ``sqs`` backend of the ``dagster_taskiq.brokers`` entry-point group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskiq import AsyncBroker

from dagster_taskiq_sqs.broker import LocalStackSqsBroker
from dagster_taskiq_sqs.settings import SqsSettings

__all__ = ["create_broker"]


def create_broker(settings: Mapping[str, Any] | None = None) -> AsyncBroker:
    """A :class:`LocalStackSqsBroker` from ``settings`` (``SqsSettings`` fields by name).

    Settings not given are read from the environment (``DAGSTER_TASKIQ_SQS_*``, ``AWS_*``) when
    this is called, never at import. Invalid values raise ``SqsSettingsError``.
    """
    return LocalStackSqsBroker(SqsSettings(**dict(settings or {})))
