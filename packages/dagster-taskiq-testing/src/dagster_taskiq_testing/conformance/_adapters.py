"""One adapter per backend: the suite's broker options turned into that backend's settings.

Each backend's package is imported only when its adapter starts a broker, so the testing
package needs none of them to import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from taskiq import AsyncBroker

from dagster_taskiq.brokers import BrokerSettings

__all__ = ["ADAPTERS", "BrokerOptions", "BrokerUnderTest"]

REQUIRE_SERVICES = os.environ.get("DAGSTER_TASKIQ_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("DAGSTER_TASKIQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")
NATS_URL = os.environ.get("DAGSTER_TASKIQ_TEST_NATS_URL", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get(
    "DAGSTER_TASKIQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"
)
_FAST_RETRIES = {
    "retry_attempts": 3,
    "retry_initial_delay": 0.05,
    "retry_max_delay": 0.2,
    "retry_timeout": 5.0,
}


@dataclasses.dataclass(frozen=True)
class BrokerOptions:
    """What a test asks of a broker, whatever the backend."""

    visibility_timeout: float = 1.0
    max_deliveries: int = 5
    dead_letters: bool = True
    heartbeat: bool = False


class BrokerUnderTest:
    """Started brokers of one backend on queues of this test's own, closed by :meth:`close`."""

    name: ClassVar[str]
    redelivers_unacked: ClassVar[bool] = True
    """An unacked message goes to another consumer once its visibility timeout passes (and its
    lease is not extended), while its first consumer lives on."""

    def __init__(self) -> None:
        self.prefix = f"conf-{uuid.uuid4().hex[:10]}"
        self.brokers: list[AsyncBroker] = []

    def require(self) -> None:
        """Skip (or fail, in CI) when the backend's service is not reachable."""

    def route(self, queue: str) -> str:
        """The ``queue`` label value that sends a message to the logical queue ``queue``."""
        return f"{self.prefix}-{queue}"

    def settings_class(self) -> type[BrokerSettings]:
        """The backend's settings class (a ``BrokerSettings``)."""
        raise NotImplementedError

    def make(self, queue: str, options: BrokerOptions) -> AsyncBroker:
        """A broker (not started) on the logical queue ``queue``: the backend's settings."""
        raise NotImplementedError

    async def broker(
        self,
        *,
        queue: str = "main",
        visibility_timeout: float = 1.0,
        max_deliveries: int = 5,
        dead_letters: bool = True,
        heartbeat: bool = False,
    ) -> AsyncBroker:
        """A started broker listening on the logical queue ``queue``."""
        options = BrokerOptions(visibility_timeout, max_deliveries, dead_letters, heartbeat)
        broker = self.make(queue, options)
        await broker.startup()
        self.brokers.append(broker)
        return broker

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        """Messages the service still holds in the logical queue ``queue`` (or its dead
        letters), delivered or not: an acked message is gone."""
        raise NotImplementedError

    async def close(self) -> None:
        for broker in self.brokers:
            try:
                await broker.shutdown()
            except Exception as exc:  # one broker's failure must not leave the others open
                logging.getLogger(__name__).warning("shutdown failed: %r", exc)
        await self.clean()

    async def clean(self) -> None:
        """Delete what the test's brokers created on the service."""

    @staticmethod
    def _unreachable(service: str, where: str, exc: BaseException) -> None:
        message = f"{service} is not reachable at {where}: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (DAGSTER_TASKIQ_REQUIRE_SERVICES=1)")
        pytest.skip(message)


def _sqs_settings(endpoint_url: str | None, name: str, options: BrokerOptions) -> Any:
    from dagster_taskiq_sqs import SqsSettings  # noqa: PLC0415 - imported when used

    return SqsSettings(
        endpoint_url=endpoint_url,
        queue_name=name,
        create_queues_if_missing=True,
        visibility_timeout=max(1, round(options.visibility_timeout)),
        max_deliveries=options.max_deliveries,
        dead_letters_enabled=options.dead_letters,
        heartbeat_enabled=options.heartbeat,
        wait_time_seconds=1,
        **_FAST_RETRIES,
    )


def _dead_letter_name(queue: str) -> str:
    from dagster_taskiq_sqs.settings import dead_letter_queue_name  # noqa: PLC0415

    return dead_letter_queue_name(queue)


class MemoryStub(BrokerUnderTest):
    """``InMemorySqsBroker``: the SQS broker on the in-memory stub, one account per test."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        from dagster_taskiq_testing.sqs import InMemorySqs  # noqa: PLC0415

        self.sqs = InMemorySqs()

    def route(self, queue: str) -> str:
        return f"{self.prefix}-{queue}.fifo"

    def settings_class(self) -> type[BrokerSettings]:
        from dagster_taskiq_sqs import SqsSettings  # noqa: PLC0415

        return SqsSettings

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        name = _dead_letter_name(self.route(queue)) if dead else self.route(queue)
        return len(self.sqs.messages(name))

    def make(self, queue: str, options: BrokerOptions) -> AsyncBroker:
        from dagster_taskiq_testing.broker import InMemorySqsBroker  # noqa: PLC0415

        return InMemorySqsBroker(_sqs_settings(None, self.route(queue), options), sqs=self.sqs)


class SqsOnMoto(BrokerUnderTest):
    """``SqsAsyncBroker`` on moto's SQS server in its own process (the session's)."""

    name = "sqs"

    def __init__(self, endpoint_url: str) -> None:
        super().__init__()
        self.endpoint_url = endpoint_url

    def route(self, queue: str) -> str:
        return f"{self.prefix}-{queue}.fifo"

    def settings_class(self) -> type[BrokerSettings]:
        from dagster_taskiq_sqs import SqsSettings  # noqa: PLC0415

        return SqsSettings

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        from dagster_taskiq_testing.servers import boto3_client  # noqa: PLC0415

        name = _dead_letter_name(self.route(queue)) if dead else self.route(queue)
        client = boto3_client(self.endpoint_url)
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
        counts = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return sum(
            int(counts[f"ApproximateNumberOf{kind}"])
            for kind in ("Messages", "MessagesNotVisible", "MessagesDelayed")
        )

    def make(self, queue: str, options: BrokerOptions) -> AsyncBroker:
        from dagster_taskiq_sqs import SqsAsyncBroker  # noqa: PLC0415

        return SqsAsyncBroker(_sqs_settings(self.endpoint_url, self.route(queue), options))


class RedisStreams(BrokerUnderTest):
    """``RedisBroker`` on the local Redis: a stream per logical queue."""

    name = "redis"

    def require(self) -> None:
        import redis  # noqa: PLC0415

        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        except Exception as exc:
            self._unreachable("Redis", REDIS_URL, exc)

    def settings_class(self) -> type[BrokerSettings]:
        from dagster_taskiq_redis import RedisSettings  # noqa: PLC0415

        return RedisSettings

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(REDIS_URL)
        try:
            return int(client.xlen(self.route(queue) + ("-dlq" if dead else "")))
        finally:
            client.close()

    def make(self, queue: str, options: BrokerOptions) -> AsyncBroker:
        from dagster_taskiq_redis import RedisBroker, RedisSettings  # noqa: PLC0415

        return RedisBroker(
            RedisSettings(
                url=REDIS_URL,
                stream=self.route(queue),
                visibility_timeout=options.visibility_timeout,
                max_deliveries=options.max_deliveries,
                dead_letters_enabled=options.dead_letters,
                heartbeat_enabled=options.heartbeat,
                block_seconds=0.2,
                **_FAST_RETRIES,
            )
        )

    async def clean(self) -> None:
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.keys(f"{self.prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


class NatsJetStream(BrokerUnderTest):
    """``NatsJetStreamBroker`` on the local NATS: a stream and subject per logical queue."""

    name = "nats"

    def require(self) -> None:
        host, port = NATS_URL.rsplit("//", 1)[1].rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError as exc:
            self._unreachable("NATS", NATS_URL, exc)

    def route(self, queue: str) -> str:
        return f"{self.prefix}.{queue}"

    def _stream(self, queue: str) -> str:
        return f"{self.prefix}_{queue}".upper().replace("-", "_")

    def settings_class(self) -> type[BrokerSettings]:
        from dagster_taskiq_nats import NatsSettings  # noqa: PLC0415

        return NatsSettings

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        import nats  # noqa: PLC0415

        # A dead letter stays in the step stream until acked (the DLQ holds only advisories).
        client = await nats.connect(NATS_URL)
        try:
            info = await client.jetstream().stream_info(self._stream(queue))
            return int(info.state.messages)
        finally:
            await client.close()

    def make(self, queue: str, options: BrokerOptions) -> AsyncBroker:
        from dagster_taskiq_nats import NatsJetStreamBroker, NatsSettings  # noqa: PLC0415

        return NatsJetStreamBroker(
            NatsSettings(
                servers=NATS_URL,
                stream=self._stream(queue),
                subject=self.route(queue),
                storage="memory",
                visibility_timeout=options.visibility_timeout,
                max_deliveries=options.max_deliveries,
                dead_letters_enabled=options.dead_letters,
                heartbeat_enabled=options.heartbeat,
                fetch_timeout=0.3,
                **_FAST_RETRIES,
            )
        )

    async def clean(self) -> None:
        import nats  # noqa: PLC0415
        from nats.js.errors import NotFoundError  # noqa: PLC0415

        client = await nats.connect(NATS_URL)
        js = client.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(self._stream("")):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(info.config.name)
        await client.close()


ADAPTERS: dict[str, Callable[[Callable[[str], Any]], BrokerUnderTest]] = {
    "memory": lambda fixture: MemoryStub(),
    "sqs": lambda fixture: SqsOnMoto(fixture("moto_sqs_server").endpoint_url),
    "redis": lambda fixture: RedisStreams(),
    "nats": lambda fixture: NatsJetStream(),
}
"""Backend name -> adapter factory (given ``request.getfixturevalue``, for the fixtures it
needs, such as the session's moto server)."""
