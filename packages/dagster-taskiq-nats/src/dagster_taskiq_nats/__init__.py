"""NATS JetStream broker for dagster-taskiq, on taskiq-nats's ``PullBasedJetStreamBroker``.

``NatsJetStreamBroker(NatsSettings(...))`` is a TaskIQ broker; ``create_broker(settings)`` is
the factory registered as the ``nats`` backend of the ``dagster_taskiq.brokers`` entry points.
"""

import importlib.metadata

from dagster_taskiq_nats.broker import NatsJetStreamBroker
from dagster_taskiq_nats.errors import (
    AckError,
    DagsterTaskIQNatsError,
    NatsConfigurationError,
    NatsSettingsError,
    NatsUnavailableError,
    SettingProblem,
)
from dagster_taskiq_nats.factory import create_broker
from dagster_taskiq_nats.settings import NatsSettings, RetryBudget, Storage

__version__ = importlib.metadata.version("dagster-taskiq-nats")

__all__ = [
    "AckError",
    "DagsterTaskIQNatsError",
    "NatsConfigurationError",
    "NatsJetStreamBroker",
    "NatsSettings",
    "NatsSettingsError",
    "NatsUnavailableError",
    "RetryBudget",
    "SettingProblem",
    "Storage",
    "__version__",
    "create_broker",
]
