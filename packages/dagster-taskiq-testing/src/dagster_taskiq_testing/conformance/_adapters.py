"""One adapter per backend: the suite's broker options turned into that backend's settings.

An adapter says how to build a backend's settings for a logical queue of the test (``main``,
``other``), how to build its broker from them, how many messages the service still holds, and
what to delete afterwards. What a backend honestly does differently is a class attribute of its
adapter, with the reason beside it. Each backend's package (and its client library) is imported
only when its adapter is used, so the testing package needs none of them to import.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import shutil
import subprocess
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from taskiq import AsyncBroker

from dagster_taskiq.brokers import BrokerSettings
from dagster_taskiq_testing import services
from dagster_taskiq_testing.broker_helpers import PATIENCE

__all__ = ["ADAPTERS", "BrokerOptions", "BrokerUnderTest"]

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
    """Started brokers of one backend on queues of this test's own, closed by :meth:`close`.

    A subclass sets ``name``, the attributes below where its backend differs, and writes
    :meth:`settings_class`, :meth:`settings`, :meth:`make` and :meth:`stored` (and
    :meth:`require` / :meth:`clean` when its service needs them).
    """

    name: ClassVar[str]
    redelivers_unacked: ClassVar[bool] = True
    """An unacked message goes to another consumer once its visibility timeout passes (and its
    lease is not extended), while its first consumer lives on."""
    dead_letter_leaves_the_queue: ClassVar[bool] = True
    """A dead letter is out of its queue (in the dead-letter queue) before it is acked."""
    dead_letters_return_by_themselves: ClassVar[bool] = True
    """A dead letter read and not acked goes back to the dead-letter queue, for any reader, once
    the visibility timeout passes."""

    def __init__(self) -> None:
        self.prefix = f"conf-{uuid.uuid4().hex[:10]}"
        self.brokers: list[AsyncBroker] = []

    def require(self) -> None:
        """Skip (or fail, in CI) when the backend's service is not reachable."""

    def route(self, queue: str) -> str:
        """The ``queue`` label value that sends a message to the logical queue ``queue``."""
        return str(self.settings(queue, BrokerOptions()).queue)

    def settings_class(self) -> type[BrokerSettings]:
        """The backend's settings class (a ``BrokerSettings``)."""
        raise NotImplementedError

    def settings(self, queue: str, options: BrokerOptions) -> BrokerSettings:
        """The backend's settings of a broker on the logical queue ``queue``."""
        raise NotImplementedError

    def make(self, settings: Any) -> AsyncBroker:
        """A broker (not started) with ``settings``."""
        raise NotImplementedError

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        """Messages the service still holds in the logical queue ``queue`` (or in its dead
        letters), delivered or not: an acked message is gone."""
        raise NotImplementedError

    async def holds(self, expected: int, queue: str = "main", *, dead: bool = False) -> bool:
        """True once :meth:`stored` is ``expected``; False if it is not within ``PATIENCE``
        (a service may count late: RabbitMQ refreshes its counts every few seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while await self.stored(queue, dead=dead) != expected:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    def queue_names(self, queue: str) -> tuple[str, str]:
        """The service's names of the logical queue ``queue`` and of its dead letters."""
        settings = self.settings(queue, BrokerOptions())
        assert settings.dead_letter_queue is not None
        return settings.queue, settings.dead_letter_queue

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
        broker = self.make(self.settings(queue, options))
        await broker.startup()
        self.brokers.append(broker)
        return broker

    async def close(self) -> None:
        for broker in self.brokers:
            try:
                await broker.shutdown()
            except Exception as exc:  # one broker's failure must not leave the others open
                logging.getLogger(__name__).warning("shutdown failed: %r", exc)
        await self.clean()

    async def clean(self) -> None:
        """Delete what the test's brokers created on the service."""


# --- SQS: the memory stub and moto's server ---------------------------------------------------


class _Sqs(BrokerUnderTest):
    endpoint_url: str | None = None

    def settings_class(self) -> type[BrokerSettings]:
        from dagster_taskiq_sqs import SqsSettings  # noqa: PLC0415 - imported when used

        return SqsSettings

    def settings(self, queue: str, options: BrokerOptions) -> BrokerSettings:
        from dagster_taskiq_sqs import SqsSettings  # noqa: PLC0415

        return SqsSettings(
            endpoint_url=self.endpoint_url,
            queue_name=f"{self.prefix}-{queue}.fifo",
            create_queues_if_missing=True,
            # SQS counts whole seconds
            visibility_timeout=max(1, round(options.visibility_timeout)),
            max_deliveries=options.max_deliveries,
            dead_letters_enabled=options.dead_letters,
            heartbeat_enabled=options.heartbeat,
            wait_time_seconds=1,
            **_FAST_RETRIES,
        )


class MemoryStub(_Sqs):
    """``InMemorySqsBroker``: the SQS broker on the in-memory stub, one account per test."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        from dagster_taskiq_testing.sqs import InMemorySqs  # noqa: PLC0415

        self.sqs = InMemorySqs()

    def make(self, settings: Any) -> AsyncBroker:
        from dagster_taskiq_testing.broker import InMemorySqsBroker  # noqa: PLC0415

        return InMemorySqsBroker(settings, sqs=self.sqs)

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        return len(self.sqs.messages(self.queue_names(queue)[1 if dead else 0]))

    async def clean(self) -> None:
        self.sqs.close()


class SqsOnMoto(_Sqs):
    """``SqsAsyncBroker`` on moto's SQS server in its own process (the session's)."""

    name = "sqs"

    def __init__(self, endpoint_url: str) -> None:
        super().__init__()
        self.endpoint_url = endpoint_url

    def make(self, settings: Any) -> AsyncBroker:
        from dagster_taskiq_sqs import SqsAsyncBroker  # noqa: PLC0415

        return SqsAsyncBroker(settings)

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        from dagster_taskiq_testing.servers import boto3_client  # noqa: PLC0415

        assert self.endpoint_url is not None
        client = boto3_client(self.endpoint_url)
        try:
            url = client.get_queue_url(QueueName=self.queue_names(queue)[1 if dead else 0])[
                "QueueUrl"
            ]
            counts = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        finally:
            client.close()
        return sum(
            int(counts["Attributes"][f"ApproximateNumberOf{kind}"])
            for kind in ("Messages", "MessagesNotVisible", "MessagesDelayed")
        )


# --- Redis Streams ------------------------------------------------------------------------------


class RedisStreams(BrokerUnderTest):
    """``RedisBroker`` on the local Redis: a stream per logical queue."""

    name = "redis"

    def require(self) -> None:
        services.require_redis()

    def settings_class(self) -> type[BrokerSettings]:
        from dagster_taskiq_redis import RedisSettings  # noqa: PLC0415

        return RedisSettings

    def settings(self, queue: str, options: BrokerOptions) -> BrokerSettings:
        from dagster_taskiq_redis import RedisSettings  # noqa: PLC0415

        return RedisSettings(
            url=services.REDIS_URL,
            stream=f"{self.prefix}-{queue}",
            visibility_timeout=options.visibility_timeout,
            max_deliveries=options.max_deliveries,
            dead_letters_enabled=options.dead_letters,
            heartbeat_enabled=options.heartbeat,
            block_seconds=0.2,
            **_FAST_RETRIES,
        )

    def make(self, settings: Any) -> AsyncBroker:
        from dagster_taskiq_redis import RedisBroker  # noqa: PLC0415

        return RedisBroker(settings)

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(services.REDIS_URL)
        try:
            return int(client.xlen(self.queue_names(queue)[1 if dead else 0]))
        finally:
            client.close()

    async def clean(self) -> None:
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(services.REDIS_URL)
        try:
            keys = list(client.keys(f"{self.prefix}*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


# --- NATS JetStream -----------------------------------------------------------------------------


class NatsJetStream(BrokerUnderTest):
    """``NatsJetStreamBroker`` on the local NATS: a stream and subject per logical queue."""

    name = "nats"
    dead_letter_leaves_the_queue = False
    """JetStream keeps a message it gave up on in its stream; the dead-letter stream holds the
    advisory that names it. Acking the dead letter deletes both."""

    def require(self) -> None:
        services.require_nats()

    def route(self, queue: str) -> str:
        return f"{self.prefix}.{queue}"

    def settings_class(self) -> type[BrokerSettings]:
        from dagster_taskiq_nats import NatsSettings  # noqa: PLC0415

        return NatsSettings

    def settings(self, queue: str, options: BrokerOptions) -> BrokerSettings:
        from dagster_taskiq_nats import NatsSettings  # noqa: PLC0415

        return NatsSettings(
            servers=services.NATS_URL,
            stream=f"{self.prefix}_{queue}".upper().replace("-", "_"),
            subject=self.route(queue),
            storage="memory",
            visibility_timeout=options.visibility_timeout,
            max_deliveries=options.max_deliveries,
            dead_letters_enabled=options.dead_letters,
            heartbeat_enabled=options.heartbeat,
            fetch_timeout=0.3,
            **_FAST_RETRIES,
        )

    def make(self, settings: Any) -> AsyncBroker:
        from dagster_taskiq_nats import NatsJetStreamBroker  # noqa: PLC0415

        return NatsJetStreamBroker(settings)

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        import nats  # noqa: PLC0415

        client = await nats.connect(services.NATS_URL)
        try:
            info = await client.jetstream().stream_info(self.queue_names(queue)[1 if dead else 0])
            return int(info.state.messages)
        finally:
            await client.close()

    async def clean(self) -> None:
        import nats  # noqa: PLC0415
        from nats.js.errors import NotFoundError  # noqa: PLC0415

        ours = self.prefix.upper().replace("-", "_")
        client = await nats.connect(services.NATS_URL)
        try:
            js = client.jetstream()
            for info in await js.streams_info():
                if info.config.name and info.config.name.startswith(ours):
                    with contextlib.suppress(NotFoundError):
                        await js.delete_stream(info.config.name)
        finally:
            await client.close()


# --- RabbitMQ -----------------------------------------------------------------------------------


class RabbitMq(BrokerUnderTest):
    """``RabbitMqBroker`` on the local RabbitMQ: a quorum queue per logical queue."""

    name = "rabbitmq"
    redelivers_unacked = False
    """RabbitMQ has no per-message visibility timeout: a message stays with its consumer while
    the consumer's connection lives (it comes back when the connection closes or falls silent
    past the heartbeat timeout: ``dagster-taskiq-rabbitmq``'s own tests)."""
    dead_letters_return_by_themselves = False
    """A dead letter read and not acked goes back to the dead-letter queue at its reader's next
    ``receive_dead_letters()`` past the visibility timeout (or when the reader's connection
    closes), not on a timer of RabbitMQ's."""
    _MIN_VISIBILITY = 2.0
    """The visibility timeout is the AMQP heartbeat timeout; one second would let a loaded
    machine's pause close a connection (and requeue its message) mid-test."""

    def require(self) -> None:
        services.require_rabbitmq()
        if shutil.which("rabbitmqctl") is None:  # AMQP counts only the messages not taken
            services.unavailable("rabbitmqctl is not on PATH: the suite counts held messages")

    def settings_class(self) -> type[BrokerSettings]:
        from dagster_taskiq_rabbitmq import RabbitMqSettings  # noqa: PLC0415

        return RabbitMqSettings

    def settings(self, queue: str, options: BrokerOptions) -> BrokerSettings:
        from dagster_taskiq_rabbitmq import RabbitMqSettings  # noqa: PLC0415

        return RabbitMqSettings(
            url=services.RABBITMQ_URL,
            queue_name=f"{self.prefix}-{queue}",
            visibility_timeout=max(self._MIN_VISIBILITY, options.visibility_timeout),
            max_deliveries=options.max_deliveries,
            dead_letters_enabled=options.dead_letters,
            heartbeat_enabled=options.heartbeat,
            wait_time_seconds=0.3,
            **_FAST_RETRIES,
        )

    def make(self, settings: Any) -> AsyncBroker:
        from dagster_taskiq_rabbitmq import RabbitMqBroker  # noqa: PLC0415

        return RabbitMqBroker(settings)

    def _counts(self) -> dict[str, int]:
        """Every queue's messages, ready or held unacked (AMQP tells only the ready ones), as
        of RabbitMQ's last statistics refresh (every 5 s by default)."""
        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "-q", "--formatter", "json", "name", "messages"],  # noqa: S607
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return {row["name"]: int(row["messages"]) for row in json.loads(listed.stdout)}

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        return self._counts().get(self.queue_names(queue)[1 if dead else 0], 0)

    async def clean(self) -> None:
        import aio_pika  # noqa: PLC0415

        connection = await aio_pika.connect(services.RABBITMQ_URL)
        try:
            for name in self._counts():
                if name.startswith(self.prefix):
                    channel = await connection.channel()
                    await channel.queue_delete(name)
        finally:
            await connection.close()


ADAPTERS: dict[str, Callable[[Callable[[str], Any]], BrokerUnderTest]] = {
    "memory": lambda fixture: MemoryStub(),
    "sqs": lambda fixture: SqsOnMoto(fixture("moto_sqs_server").endpoint_url),
    "redis": lambda fixture: RedisStreams(),
    "nats": lambda fixture: NatsJetStream(),
    "rabbitmq": lambda fixture: RabbitMq(),
}
"""Backend name -> adapter factory (given ``request.getfixturevalue``, for the fixtures it
needs, such as the session's moto server)."""
