"""Fixtures of the Redis Streams broker's tests, on the real Redis at 127.0.0.1:6379.

Every test gets its own stream names (deleted afterwards). Without Redis the tests skip, or fail
when ``DAGSTER_TASKIQ_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from taskiq.message import BrokerMessage

from dagster_taskiq_redis import RedisBroker, RedisSettings
from dagster_taskiq_testing.broker_helpers import debug_logs as shared_debug_logs
from dagster_taskiq_testing.broker_helpers import step_message
from dagster_taskiq_testing.servers import EndpointProxy

REDIS_URL = os.environ.get("DAGSTER_TASKIQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE_SERVICES = os.environ.get("DAGSTER_TASKIQ_REQUIRE_SERVICES") == "1"


def _require_redis() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        message = f"Redis is not reachable at {REDIS_URL}: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (DAGSTER_TASKIQ_REQUIRE_SERVICES=1)")
        pytest.skip(message)


class RedisHarness:
    """Brokers on unique streams of the real Redis, and a synchronous client to inspect them."""

    def __init__(self) -> None:
        self.stream = f"test-steps-{uuid.uuid4().hex[:12]}"
        self.client = redis.Redis.from_url(REDIS_URL)
        self.brokers: list[RedisBroker] = []

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
        broker = RedisBroker(self.settings(**overrides))
        await broker.startup()
        self.brokers.append(broker)
        return broker

    def pending(self, stream: str | None = None, group: str = "dagster-taskiq") -> int:
        info: Any = self.client.xpending(stream or self.stream, group)
        return int(info["pending"])

    def length(self, stream: str | None = None) -> int:
        return int(self.client.xlen(stream or self.stream))

    async def close(self) -> None:
        for broker in self.brokers:
            try:
                await broker.shutdown()
            except Exception as exc:  # one broker's failure must not leave the others open
                logging.getLogger(__name__).warning("shutdown failed: %r", exc)
        keys = [self.stream, f"{self.stream}-dlq", *self.client.keys(f"{self.stream}*")]
        self.client.delete(*set(keys))
        self.client.close()


@pytest.fixture
async def harness() -> AsyncIterator[RedisHarness]:
    _require_redis()
    harness = RedisHarness()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
def message() -> Callable[..., BrokerMessage]:
    return step_message


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Let every level through to ``capture_logs`` (another conftest may filter them)."""
    with shared_debug_logs():
        yield


@pytest.fixture
def proxy() -> Iterator[EndpointProxy]:
    """A TCP proxy in front of Redis: ``kill()`` cuts every connection, ``start()`` reopens."""
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    proxy = EndpointProxy(port).start()
    yield proxy
    proxy.kill()
