"""Fixtures of the SQS broker's tests: one harness over the stub (fake clock) and a real server.

A test taking ``harness`` runs twice: on ``InMemorySqs`` with a ``FakeClock`` (time passes only
when the test says so) and on the real server of the testing plugin's ``sqs_server`` fixture
(moto by default, LocalStack with ``--sqs-server=localstack``; time really passes, timeouts are
short). Helpers live on the harness object, so test modules never import this file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from taskiq.kicker import AsyncKicker

from dagster_taskiq.messaging import STEP_TASK_NAME, deduplication_id
from dagster_taskiq_sqs import LocalStackSqsBroker, SqsSettings
from dagster_taskiq_testing import FakeClock, InMemorySqs, InMemorySqsBroker
from dagster_taskiq_testing.broker_helpers import StartedBrokers, step_labels_of
from dagster_taskiq_testing.servers import EndpointProxy, MotoServer, SqsServer
from dagster_taskiq_testing.servers._base import free_port
from dagster_taskiq_testing.sqs_emulators import SqsEmulator


class Harness(StartedBrokers):
    """Brokers, time and inspection on one SQS emulator (the stub or a real server)."""

    def __init__(self, emulator: SqsEmulator, *, timer_slack: float = 0.3) -> None:
        super().__init__()
        self.emulator = emulator
        self.timer_slack = timer_slack
        self._client: Any = None
        # The stub's clock is fake: a 30 s timeout costs nothing. On a server it is real time.
        self.visibility_timeout = 30 if emulator.is_stub else 1

    @property
    def name(self) -> str:
        return self.emulator.name

    @property
    def stub(self) -> InMemorySqs | None:
        return self.emulator.stub

    @property
    def clock(self) -> FakeClock | None:
        return self.emulator.clock

    @property
    def endpoint_url(self) -> str | None:
        return self.emulator.endpoint_url

    @property
    def is_stub(self) -> bool:
        return self.emulator.is_stub

    def queue_name(self, base: str = "steps", *, fifo: bool = True) -> str:
        return self.emulator.queue_name(base, fifo=fifo)

    def settings(self, **overrides: Any) -> SqsSettings:
        values: dict[str, Any] = {
            "queue_name": self.queue_name(),
            "create_queues_if_missing": True,
            "visibility_timeout": self.visibility_timeout,
            "max_messages": 10,
            "wait_time_seconds": 20 if self.is_stub else 1,
            "retry_attempts": 3,
            "retry_initial_delay": 0.05,
            "retry_max_delay": 0.2,
            "retry_timeout": 5.0,
        }
        if self.endpoint_url is not None:
            values.update(
                endpoint_url=self.endpoint_url,
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
        values.update(overrides)
        return SqsSettings(**values)

    async def broker(
        self, settings: SqsSettings | None = None, **overrides: Any
    ) -> LocalStackSqsBroker:
        """A started broker (shut down at the end of the test)."""
        settings = settings or self.settings(**overrides)
        if self.stub is not None:
            return await self.start(InMemorySqsBroker(settings, sqs=self.stub))
        return await self.start(LocalStackSqsBroker(settings))

    def client(self) -> Any:
        """A synchronous boto3-shaped client (the stub's, or boto3's on the server)."""
        if self._client is None:
            self._client = self.emulator.client()
        return self._client

    def queue_url(self, name: str) -> str:
        return str(self.client().get_queue_url(QueueName=name)["QueueUrl"])

    def create_queue(self, name: str, **attributes: Any) -> str:
        values = {key: str(value) for key, value in attributes.items()}
        if name.endswith(".fifo"):
            values["FifoQueue"] = "true"
        return str(self.client().create_queue(QueueName=name, Attributes=values)["QueueUrl"])

    def receive_now(self, queue: str, **params: Any) -> list[dict[str, Any]]:
        """What a receive without waiting returns now (the message becomes in flight)."""
        response = self.client().receive_message(
            QueueUrl=self.queue_url(queue),
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            AttributeNames=["ApproximateReceiveCount"],
            **params,
        )
        return list(response.get("Messages", []))

    def counts(self, queue: str) -> tuple[int, int]:
        """(visible, in flight) messages of a queue."""
        attributes = self.client().get_queue_attributes(
            QueueUrl=self.queue_url(queue),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    async def pass_time(self, seconds: float) -> None:
        """Advance the stub's fake clock, or really wait on a server."""
        if self.clock is not None:
            self.clock.advance(seconds)
            for _ in range(5):
                await asyncio.sleep(0)
        else:
            await asyncio.sleep(seconds + self.timer_slack)

    async def clean(self) -> None:
        self.emulator.close()


async def kick_step(
    broker: LocalStackSqsBroker,
    run_id: str,
    step_key: str,
    *,
    retry_number: int = 0,
    enqueue_attempt: int = 0,
    payload: str = "{}",
    **labels: Any,
) -> None:
    """Send a step message the way the executor does (labels and task id)."""
    key = f"{run_id}:{step_key}"
    step_labels = {
        **step_labels_of(key, retry_number=retry_number, enqueue_attempt=enqueue_attempt),
        **labels,
    }
    kicker: AsyncKicker[[str], None] = AsyncKicker(
        task_name=STEP_TASK_NAME, broker=broker, labels=step_labels
    )
    await kicker.with_task_id(deduplication_id(key, retry_number, enqueue_attempt)).kiq(payload)


@pytest.fixture
def kick() -> Callable[..., Any]:
    """``await kick(broker, run_id, step_key, retry_number=, enqueue_attempt=)``."""
    return kick_step


def _server_harness(server: SqsServer) -> Harness:
    # LocalStack checks visibility timeouts and delays on a timer about once a second.
    slack = 1.1 if server.name == "localstack" else 0.3
    return Harness(SqsEmulator(server.name, endpoint_url=server.endpoint_url), timer_slack=slack)


@pytest.fixture(params=["stub", pytest.param("server", marks=pytest.mark.sqs_server)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "stub":
        harness = Harness(SqsEmulator.for_stub())
    else:
        harness = _server_harness(request.getfixturevalue("sqs_server"))
    yield harness
    await harness.close()


@pytest.fixture
async def stub_harness() -> AsyncIterator[Harness]:
    """The stub only (fake clock)."""
    harness = Harness(SqsEmulator.for_stub())
    yield harness
    await harness.close()


@pytest.fixture
async def server_harness(sqs_server: SqsServer) -> AsyncIterator[Harness]:
    """The real server only (real time)."""
    harness = _server_harness(sqs_server)
    yield harness
    await harness.close()


# --- faults -------------------------------------------------------------------------------


@pytest.fixture
def endpoint_proxy_factory() -> Iterator[Callable[[int], EndpointProxy]]:
    proxies: list[EndpointProxy] = []

    def make(target_port: int) -> EndpointProxy:
        proxy = EndpointProxy(target_port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.kill()


@pytest.fixture
def moto_server_factory() -> Iterator[Callable[..., MotoServer]]:
    """moto servers on fixed ports (known before start), each restartable on its port."""
    servers: list[MotoServer] = []

    def make(port: int | None = None) -> MotoServer:
        server = MotoServer(port or free_port())
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait (really) until ``check()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``await wait_until(check, timeout, what)``."""
    return eventually
