"""The SQS emulators a test can run on: the in-memory stub, moto's server, LocalStack.

One interface over the three, so one test runs against each of them (the plugin's
``sqs_emulator`` / ``sqs_contract_emulator`` fixtures). "Emulator" means one of these three SQS
stand-ins only; a broker *backend* (sqs, memory, redis, nats, rabbitmq) is another thing.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from dagster_taskiq_testing._clock import FakeClock
from dagster_taskiq_testing.servers._base import DEFAULT_REGION
from dagster_taskiq_testing.sqs import InMemorySqs

STUB = "stub"
MOTO = "moto"
LOCALSTACK = "localstack"
EMULATOR_NAMES = (STUB, MOTO, LOCALSTACK)


class SqsEmulator:
    """A place SQS calls go: the stub (with a ``FakeClock``) or a real server's endpoint.

    ``client()`` makes a synchronous boto3-shaped client, ``async_client()`` an async one;
    ``pass_time(seconds)`` advances the fake clock on the stub and really sleeps on a server;
    ``queue_name(base)`` makes a name no other test uses (real servers are shared per session).
    """

    def __init__(
        self,
        name: str,
        *,
        stub: InMemorySqs | None = None,
        clock: FakeClock | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        if (stub is None) == (endpoint_url is None):
            raise ValueError("give either a stub or an endpoint_url")
        self.name = name
        self.stub = stub
        self.clock = clock
        self.endpoint_url = endpoint_url
        # LocalStack checks visibility and delays on a timer about once a second.
        self.timer_slack = 1.1 if name == LOCALSTACK else 0.1
        self._clients: list[Any] = []

    def __repr__(self) -> str:
        return f"SqsEmulator({self.name!r})"

    @classmethod
    def for_stub(cls, stub: InMemorySqs | None = None) -> SqsEmulator:
        clock = FakeClock()
        return cls(STUB, stub=stub or InMemorySqs(clock=clock), clock=clock)

    @property
    def is_stub(self) -> bool:
        return self.stub is not None

    @property
    def fake_time(self) -> bool:
        return self.clock is not None

    def client(self) -> Any:
        """A synchronous SQS client (the stub's, or boto3's pointed at the server)."""
        if self.stub is not None:
            return self.stub.client()
        from dagster_taskiq_testing.servers._base import boto3_client  # noqa: PLC0415

        assert self.endpoint_url is not None
        client = boto3_client(self.endpoint_url)
        self._clients.append(client)
        return client

    @contextlib.asynccontextmanager
    async def async_client(self) -> AsyncIterator[Any]:
        """``async with emulator.async_client() as sqs``: the stub's, or aiobotocore's."""
        if self.stub is not None:
            async with self.stub.async_client() as stub_client:
                yield stub_client
            return
        from aiobotocore.session import get_session  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

        session = get_session()
        async with session.create_client(
            "sqs",
            endpoint_url=self.endpoint_url,
            region_name=DEFAULT_REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 - emulators accept any credentials
        ) as client:
            yield client

    def queue_name(self, base: str = "q", *, fifo: bool = False) -> str:
        """A queue name unique to this call (``.fifo`` added for FIFO queues)."""
        name = f"{base[:40]}-{uuid.uuid4().hex[:16]}"
        return f"{name}.fifo" if fifo else name

    def create_queue(
        self, base: str = "q", *, fifo: bool = False, client: Any = None, **attributes: Any
    ) -> str:
        """Create a uniquely named queue with the given attributes; its URL."""
        sqs = client or self.client()
        values = {key: str(value) for key, value in attributes.items()}
        if fifo:
            values["FifoQueue"] = "true"
        response = sqs.create_queue(QueueName=self.queue_name(base, fifo=fifo), Attributes=values)
        url: str = response["QueueUrl"]
        return url

    def pass_time(self, seconds: float) -> None:
        """Let ``seconds`` pass: instantly on the stub's fake clock, really on a server."""
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            time.sleep(seconds + self.timer_slack)

    def close(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        if self.stub is not None:
            self.stub.close()
