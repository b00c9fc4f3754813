"""Redis Streams broker for dagster-taskiq, on taskiq-redis's ``RedisStreamBroker``.

``RedisBroker(RedisSettings(...))`` is a TaskIQ broker; ``create_broker(settings)`` is
the factory registered as the ``redis`` backend of the ``dagster_taskiq.brokers`` entry points.
"""

import importlib.metadata

from dagster_taskiq_redis.broker import RedisBroker
from dagster_taskiq_redis.errors import (
    AckError,
    DagsterTaskIQRedisError,
    RedisSettingsError,
    RedisUnavailableError,
    SettingProblem,
)
from dagster_taskiq_redis.factory import create_broker
from dagster_taskiq_redis.settings import RedisSettings, RetryBudget

__version__ = importlib.metadata.version("dagster-taskiq-redis")

__all__ = [
    "AckError",
    "DagsterTaskIQRedisError",
    "RedisBroker",
    "RedisSettings",
    "RedisSettingsError",
    "RedisUnavailableError",
    "RetryBudget",
    "SettingProblem",
    "__version__",
    "create_broker",
]
