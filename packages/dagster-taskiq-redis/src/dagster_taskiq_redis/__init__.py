"""Redis Streams broker for dagster-taskiq, on taskiq-redis's ``RedisStreamBroker``.

``RedisStreamsBroker(RedisSettings(...))`` is a TaskIQ broker; ``create_broker(settings)`` is
the factory registered as the ``redis`` backend of the ``dagster_taskiq.brokers`` entry points.
"""

from dagster_taskiq_redis.broker import Delivery, RedisMessageControl, RedisStreamsBroker
from dagster_taskiq_redis.errors import (
    AckError,
    DagsterTaskIQRedisError,
    RedisSettingsError,
    RedisUnavailableError,
    SettingProblem,
)
from dagster_taskiq_redis.factory import create_broker
from dagster_taskiq_redis.settings import RedisSettings, RetryBudget

__all__ = [
    "AckError",
    "DagsterTaskIQRedisError",
    "Delivery",
    "RedisMessageControl",
    "RedisSettings",
    "RedisSettingsError",
    "RedisStreamsBroker",
    "RedisUnavailableError",
    "RetryBudget",
    "SettingProblem",
    "create_broker",
]
