"""Amazon SQS (and LocalStack) broker for dagster-taskiq, on taskiq-aio-sqs.

``SqsAsyncBroker(SqsSettings(...))`` (also known as ``LocalStackSqsBroker``, the brief's name) is
a TaskIQ broker; ``create_broker(settings)`` is the
factory registered as the ``sqs`` backend of the ``dagster_taskiq.brokers`` entry points.
"""

import importlib.metadata

from dagster_taskiq_sqs.broker import LocalStackSqsBroker, SqsAsyncBroker
from dagster_taskiq_sqs.client import ClientFactory, aiobotocore_client_factory
from dagster_taskiq_sqs.errors import (
    AckError,
    DagsterTaskIQSqsError,
    FifoDelayError,
    MessageTooLargeError,
    QueueConfigurationError,
    QueueNotFoundError,
    SettingProblem,
    SqsSettingsError,
    SqsUnavailableError,
)
from dagster_taskiq_sqs.factory import create_broker
from dagster_taskiq_sqs.queues import QueueInfo
from dagster_taskiq_sqs.settings import (
    DeduplicationScope,
    FifoThroughputLimit,
    GroupStrategy,
    RetryBudget,
    SqsSettings,
)

__version__ = importlib.metadata.version("dagster-taskiq-sqs")

__all__ = [
    "AckError",
    "ClientFactory",
    "DagsterTaskIQSqsError",
    "DeduplicationScope",
    "FifoDelayError",
    "FifoThroughputLimit",
    "GroupStrategy",
    "LocalStackSqsBroker",
    "MessageTooLargeError",
    "QueueConfigurationError",
    "QueueInfo",
    "QueueNotFoundError",
    "RetryBudget",
    "SettingProblem",
    "SqsAsyncBroker",
    "SqsSettings",
    "SqsSettingsError",
    "SqsUnavailableError",
    "__version__",
    "aiobotocore_client_factory",
    "create_broker",
]
