"""Fixtures of the RabbitMQ broker's tests, on the real RabbitMQ at 127.0.0.1:5672.

Every test gets its own queue names (deleted afterwards). Without RabbitMQ the tests skip, or
fail when ``DAGSTER_TASKIQ_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika

from dagster_taskiq_rabbitmq import RabbitMqBroker, RabbitMqSettings
from dagster_taskiq_testing.broker_helpers import StartedBrokers, harness_fixture, proxy_fixture
from dagster_taskiq_testing.services import RABBITMQ_URL, require_rabbitmq


class RabbitMqHarness(StartedBrokers):
    """Brokers on unique queues of the real RabbitMQ, and a connection of its own to look."""

    def __init__(self) -> None:
        super().__init__()
        self.queue = f"test-steps-{uuid.uuid4().hex[:12]}"
        self.queues: set[str] = {self.queue, f"{self.queue}-dlq"}

    def settings(self, **overrides: Any) -> RabbitMqSettings:
        values: dict[str, Any] = {
            "url": RABBITMQ_URL,
            "queue_name": self.queue,
            "visibility_timeout": 2.0,
            "wait_time_seconds": 0.3,
            "retry_attempts": 3,
            "retry_initial_delay": 0.05,
            "retry_max_delay": 0.2,
            "retry_timeout": 5.0,
        }
        values.update(overrides)
        settings = RabbitMqSettings(**values)
        self.queues.add(settings.queue_name)
        if settings.dead_letter_queue is not None:
            self.queues.add(settings.dead_letter_queue)
        return settings

    async def broker(self, **overrides: Any) -> RabbitMqBroker:
        """A started broker (shut down at the end of the test)."""
        return await self.start(RabbitMqBroker(self.settings(**overrides)))

    async def ready(self, queue: str | None = None) -> int:
        """Messages ready for delivery in ``queue`` (not those held unacked by a consumer)."""
        connection = await aio_pika.connect(RABBITMQ_URL)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue or self.queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            await connection.close()

    async def delete_queue(self, queue: str) -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        try:
            await (await connection.channel()).queue_delete(queue)
        finally:
            await connection.close()

    async def clean(self) -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        try:
            for queue in self.queues:
                channel = await connection.channel()
                await channel.queue_delete(queue)
        finally:
            await connection.close()


harness = harness_fixture(RabbitMqHarness, require_rabbitmq)
proxy = proxy_fixture(RABBITMQ_URL)
