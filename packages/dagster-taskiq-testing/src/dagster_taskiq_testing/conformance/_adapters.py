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
import importlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from taskiq import AsyncBroker

from dagster_taskiq.brokers import BrokerSettings
from dagster_taskiq_testing import services
from dagster_taskiq_testing.broker_helpers import PATIENCE, StartedBrokers

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


class BrokerUnderTest(StartedBrokers):
    """Started brokers of one backend on queues of this test's own, closed by :meth:`close`.

    A subclass names its backend (``name``), where its package keeps the settings and broker
    classes, where a logical queue lives on its service (:meth:`transport`), how many messages
    the service holds (:meth:`stored`) and, where its service needs them, :meth:`require` and
    :meth:`clean`; the attributes below where its backend differs.
    """

    name: ClassVar[str]
    package: ClassVar[str]
    """The backend's package, e.g. ``dagster_taskiq_redis``."""
    settings_name: ClassVar[str]
    broker_name: ClassVar[str]
    redelivers_unacked: ClassVar[bool] = True
    """An unacked message goes to another consumer once its visibility timeout passes (and its
    lease is not extended), while its first consumer lives on."""
    dead_letter_leaves_the_queue: ClassVar[bool] = True
    """A dead letter is out of its queue (in the dead-letter queue) before it is acked."""
    dead_letters_return_by_themselves: ClassVar[bool] = True
    """A dead letter read and not acked goes back to the dead-letter queue, for any reader, once
    the visibility timeout passes."""
    smallest_visibility: ClassVar[str] = "greater than 0"
    """What the settings say of a visibility timeout of 0."""
    from_environment: ClassVar[tuple[str, str, str]]
    """A setting, the environment variable it is read from, and a value for it."""
    unreachable: ClassVar[tuple[dict[str, Any], str] | None] = None
    """Settings that point the broker at a server that is not there, with a password
    ``secret``, and how errors show that server (password masked); None where the backend has
    no server (the stub) or tests its own (SQS: ``dagster-taskiq-sqs``'s fault tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"conf-{uuid.uuid4().hex[:10]}"

    def require(self) -> None:
        """Skip (or fail, in CI) when the backend's service is not reachable."""

    def transport(self, queue: str) -> dict[str, Any]:
        """The backend's own settings for a broker on the logical queue ``queue``."""
        raise NotImplementedError

    def visibility(self, seconds: float) -> float:
        """The visibility timeout the backend can keep closest to ``seconds``."""
        return seconds

    def route(self, queue: str) -> str:
        """The ``queue`` label value that sends a message to the logical queue ``queue``."""
        return str(self.settings(queue, BrokerOptions()).queue)

    def settings_class(self) -> type[BrokerSettings]:
        """The backend's settings class (a ``BrokerSettings``)."""
        found: type[BrokerSettings] = getattr(
            importlib.import_module(self.package), self.settings_name
        )
        return found

    def settings(self, queue: str, options: BrokerOptions) -> BrokerSettings:
        """The backend's settings of a broker on the logical queue ``queue``."""
        return self.settings_class()(
            visibility_timeout=self.visibility(options.visibility_timeout),
            max_deliveries=options.max_deliveries,
            dead_letters_enabled=options.dead_letters,
            heartbeat_enabled=options.heartbeat,
            **_FAST_RETRIES,
            **self.transport(queue),
        )

    def broker_class(self) -> Callable[[BrokerSettings], AsyncBroker]:
        """The backend's broker class."""
        found: Callable[[BrokerSettings], AsyncBroker] = getattr(
            importlib.import_module(self.package), self.broker_name
        )
        return found

    def make(self, settings: BrokerSettings) -> AsyncBroker:
        """A broker (not started) with ``settings``."""
        return self.broker_class()(settings)

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

    def queue_name(self, queue: str, *, dead: bool = False) -> str:
        return self.queue_names(queue)[1 if dead else 0]

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
        return await self.start(self.make(self.settings(queue, options)))


# --- SQS: the memory stub and moto's server ---------------------------------------------------


class _Sqs(BrokerUnderTest):
    package = "dagster_taskiq_sqs"
    settings_name = "SqsSettings"
    broker_name = "SqsAsyncBroker"
    smallest_visibility = "greater than or equal to 1"  # SQS counts whole seconds
    from_environment = ("region", "DAGSTER_TASKIQ_SQS_REGION", "eu-west-1")
    endpoint_url: str | None = None

    def transport(self, queue: str) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "queue_name": f"{self.prefix}-{queue}.fifo",
            "create_queues_if_missing": True,
            "wait_time_seconds": 1,
        }

    def visibility(self, seconds: float) -> float:
        return max(1, round(seconds))  # SQS counts whole seconds


class MemoryStub(_Sqs):
    """``InMemorySqsBroker``: the SQS broker on the in-memory stub, one account per test."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        from dagster_taskiq_testing.sqs import InMemorySqs  # noqa: PLC0415

        self.sqs = InMemorySqs()

    def make(self, settings: BrokerSettings) -> AsyncBroker:
        from dagster_taskiq_sqs import SqsSettings  # noqa: PLC0415 - imported when used
        from dagster_taskiq_testing.broker import InMemorySqsBroker  # noqa: PLC0415

        assert isinstance(settings, SqsSettings)
        return InMemorySqsBroker(settings, sqs=self.sqs)

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        return len(self.sqs.messages(self.queue_name(queue, dead=dead)))

    async def clean(self) -> None:
        self.sqs.close()


class SqsOnMoto(_Sqs):
    """``SqsAsyncBroker`` on moto's SQS server in its own process (the session's)."""

    name = "sqs"

    def __init__(self, endpoint_url: str) -> None:
        super().__init__()
        self.endpoint_url = endpoint_url

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        from dagster_taskiq_testing.servers import boto3_client  # noqa: PLC0415

        assert self.endpoint_url is not None
        client = boto3_client(self.endpoint_url)
        try:
            url = client.get_queue_url(QueueName=self.queue_name(queue, dead=dead))["QueueUrl"]
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
    package = "dagster_taskiq_redis"
    settings_name = "RedisSettings"
    broker_name = "RedisBroker"
    from_environment = ("group", "DAGSTER_TASKIQ_REDIS_GROUP", "from-env")
    unreachable = (
        {"url": "redis://:secret@127.0.0.1:1", "connect_timeout": 0.5},
        "redis://:***@127.0.0.1:1",
    )

    def require(self) -> None:
        services.require_redis()

    def transport(self, queue: str) -> dict[str, Any]:
        return {"url": services.REDIS_URL, "stream": f"{self.prefix}-{queue}", "block_seconds": 0.2}

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(services.REDIS_URL)
        try:
            return int(client.xlen(self.queue_name(queue, dead=dead)))
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
    package = "dagster_taskiq_nats"
    settings_name = "NatsSettings"
    broker_name = "NatsJetStreamBroker"
    from_environment = ("consumer", "DAGSTER_TASKIQ_NATS_CONSUMER", "from-env")
    unreachable = (
        {"servers": "nats://user:secret@127.0.0.1:1", "connect_timeout": 1},
        "nats://***@127.0.0.1:1",  # a NATS URL's user part may be a token: all of it masked
    )
    dead_letter_leaves_the_queue = False
    """JetStream keeps a message it gave up on in its stream; the dead-letter stream holds the
    advisory that names it. Acking the dead letter deletes both."""

    def require(self) -> None:
        services.require_nats()

    def route(self, queue: str) -> str:
        return f"{self.prefix}.{queue}"

    def _stream(self, queue: str) -> str:
        return f"{self.prefix}_{queue}".upper().replace("-", "_")

    def transport(self, queue: str) -> dict[str, Any]:
        return {
            "servers": services.NATS_URL,
            "stream": self._stream(queue),
            "subject": self.route(queue),
            "storage": "memory",
            "fetch_timeout": 0.3,
        }

    async def stored(self, queue: str = "main", *, dead: bool = False) -> int:
        import nats  # noqa: PLC0415

        client = await nats.connect(services.NATS_URL)
        try:
            info = await client.jetstream().stream_info(self.queue_name(queue, dead=dead))
            return int(info.state.messages)
        finally:
            await client.close()

    async def clean(self) -> None:
        import nats  # noqa: PLC0415
        from nats.js.errors import NotFoundError  # noqa: PLC0415

        client = await nats.connect(services.NATS_URL)
        try:
            js = client.jetstream()
            for info in await js.streams_info():
                if info.config.name and info.config.name.startswith(self._stream("")):
                    with contextlib.suppress(NotFoundError):
                        await js.delete_stream(info.config.name)
        finally:
            await client.close()


# --- RabbitMQ -----------------------------------------------------------------------------------


class RabbitMq(BrokerUnderTest):
    """``RabbitMqBroker`` on the local RabbitMQ: a quorum queue per logical queue."""

    name = "rabbitmq"
    package = "dagster_taskiq_rabbitmq"
    settings_name = "RabbitMqSettings"
    broker_name = "RabbitMqBroker"
    from_environment = (
        "dead_letter_queue_name",
        "DAGSTER_TASKIQ_RABBITMQ_DEAD_LETTER_QUEUE_NAME",
        "from-env",
    )
    unreachable = (
        {"url": "amqp://guest:secret@127.0.0.1:1/", "connect_timeout": 0.5},
        "amqp://guest:***@127.0.0.1:1/",
    )
    redelivers_unacked = False
    """RabbitMQ has no per-message visibility timeout: a message stays with its consumer while
    the consumer's connection lives (it comes back when the connection closes or falls silent
    past the heartbeat timeout: ``dagster-taskiq-rabbitmq``'s own tests)."""
    dead_letters_return_by_themselves = False
    """A dead letter read and not acked goes back to the dead-letter queue at its reader's next
    ``receive_dead_letters()`` past the visibility timeout (or when the reader's connection
    closes), not on a timer of RabbitMQ's."""

    def require(self) -> None:
        services.require_rabbitmq()
        if shutil.which("rabbitmqctl") is None:  # AMQP counts only the messages not taken
            services.unavailable("rabbitmqctl is not on PATH: the suite counts held messages")

    def transport(self, queue: str) -> dict[str, Any]:
        return {
            "url": services.RABBITMQ_URL,
            "queue_name": f"{self.prefix}-{queue}",
            "wait_time_seconds": 0.3,
        }

    def visibility(self, seconds: float) -> float:
        # It is the AMQP heartbeat timeout: one second would let a loaded machine's pause close
        # a connection (and requeue its message) mid-test.
        return max(2.0, seconds)

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
        return self._counts().get(self.queue_name(queue, dead=dead), 0)

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
