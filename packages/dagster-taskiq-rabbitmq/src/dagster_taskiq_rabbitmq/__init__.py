"""RabbitMQ broker for dagster-taskiq, on taskiq-aio-pika's ``AioPikaBroker`` (quorum queues).

``RabbitMqBroker(RabbitMqSettings(...))`` is a TaskIQ broker; ``create_broker(settings)`` is the
factory registered as the ``rabbitmq`` backend of the ``dagster_taskiq.brokers`` entry points.
"""

from importlib.metadata import version

from dagster_taskiq_rabbitmq.broker import RabbitMqBroker, RecentSends
from dagster_taskiq_rabbitmq.errors import (
    AckError,
    DagsterTaskIQRabbitMqError,
    RabbitMqConfigurationError,
    RabbitMqSettingsError,
    RabbitMqUnavailableError,
    SettingProblem,
)
from dagster_taskiq_rabbitmq.factory import create_broker
from dagster_taskiq_rabbitmq.settings import RabbitMqSettings, RetryBudget

__version__ = version("dagster-taskiq-rabbitmq")

__all__ = [
    "AckError",
    "DagsterTaskIQRabbitMqError",
    "RabbitMqBroker",
    "RabbitMqConfigurationError",
    "RabbitMqSettings",
    "RabbitMqSettingsError",
    "RabbitMqUnavailableError",
    "RecentSends",
    "RetryBudget",
    "SettingProblem",
    "__version__",
    "create_broker",
]
