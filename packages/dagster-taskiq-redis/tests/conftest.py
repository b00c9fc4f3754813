"""Fixtures of the Redis Streams broker's tests, on the real Redis at 127.0.0.1:6379.

Every test gets its own stream names (deleted afterwards). Without Redis the tests skip, or fail
when ``DAGSTER_TASKIQ_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import uuid
from typing import Any

import redis

from dagster_taskiq_redis import RedisBroker, RedisSettings
from dagster_taskiq_testing.broker_helpers import StartedBrokers, harness_fixture, proxy_fixture
from dagster_taskiq_testing.services import REDIS_URL, require_redis


class RedisHarness(StartedBrokers):
    """Brokers on unique streams of the real Redis, and a synchronous client to inspect them."""

    def __init__(self) -> None:
        super().__init__()
        self.stream = f"test-steps-{uuid.uuid4().hex[:12]}"
        self.client = redis.Redis.from_url(REDIS_URL)

    def settings(self, **overrides: Any) -> RedisSettings:
        values: dict[str, Any] = {
            "url": REDIS_URL,
            "stream": self.stream,
            "visibility_timeout": 1.0,
            "block_seconds": 0.2,
            "retry_attempts": 3,
            "retry_initial_delay": 0.05,
            "retry_max_delay": 0.2,
            "retry_timeout": 5.0,
        }
        values.update(overrides)
        return RedisSettings(**values)

    async def broker(self, **overrides: Any) -> RedisBroker:
        """A started broker (shut down at the end of the test)."""
        return await self.start(RedisBroker(self.settings(**overrides)))

    def pending(self, stream: str | None = None, group: str = "dagster-taskiq") -> int:
        info: Any = self.client.xpending(stream or self.stream, group)
        return int(info["pending"])

    def length(self, stream: str | None = None) -> int:
        return int(self.client.xlen(stream or self.stream))

    async def clean(self) -> None:
        keys = [self.stream, f"{self.stream}-dlq", *self.client.keys(f"{self.stream}*")]
        self.client.delete(*set(keys))
        self.client.close()


harness = harness_fixture(RedisHarness, require_redis)
proxy = proxy_fixture(REDIS_URL)
