"""Faults against a real server: an endpoint not up yet, never up, killed mid-run."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from typing import Any

import pytest
from structlog.testing import capture_logs
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver

from dagster_taskiq_sqs import LocalStackSqsBroker, SqsSettings, SqsUnavailableError
from dagster_taskiq_testing.servers import boto3_client

pytestmark = [pytest.mark.sqs_server, pytest.mark.usefixtures("debug_logs")]


def _settings(endpoint_url: str, **overrides: Any) -> SqsSettings:
    values: dict[str, Any] = {
        "queue_name": f"faults-{uuid.uuid4().hex[:12]}.fifo",
        "endpoint_url": endpoint_url,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
        "create_queues_if_missing": True,
        "visibility_timeout": 6,
        "wait_time_seconds": 1,
        "max_messages": 10,
        "connect_timeout": 1.0,
        "retry_attempts": 1000,
        "retry_initial_delay": 0.05,
        "retry_max_delay": 0.3,
        "retry_timeout": 15.0,
    }
    values.update(overrides)
    return SqsSettings(**values)


async def test_startup_waits_for_a_server_that_comes_up_within_the_budget(
    moto_server_factory, kick
) -> None:
    server = moto_server_factory()  # its port is chosen, nothing listens on it yet
    broker = LocalStackSqsBroker(_settings(server.endpoint_url))
    with capture_logs() as logs:
        starting = asyncio.create_task(broker.startup())
        await asyncio.sleep(1.0)
        assert not starting.done()
        server.start()
        await asyncio.wait_for(starting, 15)
    try:
        retries = [entry for entry in logs if entry["event"] == "sqs_retry"]
        assert len(retries) >= 2
        assert {entry["endpoint"] for entry in retries} == {server.endpoint_url}
        assert [entry["attempt"] for entry in retries] == list(range(1, len(retries) + 1))
        assert all("EndpointConnectionError" in entry["error"] for entry in retries)
        await kick(broker, "run-1", "a")  # and it works
        message = await anext(broker.listen())
        await message.ack()
    finally:
        await broker.shutdown()


async def test_startup_gives_up_after_the_time_budget_with_a_clear_error(
    moto_server_factory,
) -> None:
    server = moto_server_factory()  # never started
    settings = _settings(server.endpoint_url, retry_timeout=1.5, retry_max_delay=0.3)
    broker = LocalStackSqsBroker(settings)
    started = time.monotonic()
    with pytest.raises(SqsUnavailableError) as excinfo:
        await broker.startup()
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 1.5 + 0.3 + 2.0  # the budget, one backoff, slack for one call
    message = str(excinfo.value)
    assert server.endpoint_url in message
    assert settings.dead_letter_queue in message  # the first queue it tried to resolve
    assert "retry_timeout" in message
    assert "EndpointConnectionError" in message


async def test_startup_gives_up_after_the_attempt_budget(moto_server_factory) -> None:
    server = moto_server_factory()
    broker = LocalStackSqsBroker(_settings(server.endpoint_url, retry_attempts=3))
    started = time.monotonic()
    with pytest.raises(SqsUnavailableError, match=r"after 3 attempt\(s\)"):
        await broker.startup()
    assert time.monotonic() - started < 5


async def test_receive_loop_gives_up_when_the_endpoint_stays_down(
    moto_server_factory, endpoint_proxy_factory
) -> None:
    server = moto_server_factory()
    server.start()
    proxy = endpoint_proxy_factory(server.port)
    proxy.start()
    broker = LocalStackSqsBroker(_settings(proxy.endpoint_url, retry_timeout=1.0))
    await broker.startup()
    try:
        proxy.kill()
        started = time.monotonic()
        with pytest.raises(SqsUnavailableError) as excinfo:
            await anext(broker.listen())
        assert time.monotonic() - started < 1.0 + 0.3 + 3.0
        assert proxy.endpoint_url in str(excinfo.value)
        assert broker.settings.queue in str(excinfo.value)
        assert "receive_message" in str(excinfo.value)
    finally:
        await broker.shutdown()


async def test_every_message_is_processed_once_across_a_server_kill_and_restart(
    moto_server_factory, endpoint_proxy_factory, wait_until
) -> None:
    first = moto_server_factory()
    first.start()
    proxy = endpoint_proxy_factory(first.port)
    proxy.start()
    settings = _settings(proxy.endpoint_url, heartbeat_interval=1.0)
    sender = LocalStackSqsBroker(settings)  # the executor's side
    worker = LocalStackSqsBroker(settings)  # a worker process's side
    ledger: list[int] = []

    @worker.task(task_name="tests.record")
    async def record(number: int) -> None:
        await asyncio.sleep(0.01)
        ledger.append(number)

    kicker: AsyncKicker[[int], None] = AsyncKicker(
        task_name="tests.record", broker=sender, labels={}
    )

    async def send(numbers: range) -> None:
        for number in numbers:
            await kicker.kiq(number)

    await sender.startup()
    await worker.startup()
    finish = asyncio.Event()
    listening = asyncio.create_task(Receiver(worker, run_startup=False).listen(finish))
    try:
        with capture_logs() as logs:
            await send(range(30))
            await wait_until(lambda: len(ledger) >= 10, 20, "the worker to get going")
            # The server dies: port closed, every connection reset; then a new one comes up.
            proxy.kill()
            first.stop()
            during_outage = asyncio.create_task(send(range(30, 45)))
            await asyncio.sleep(1.0)
            second = moto_server_factory()
            second.start()
            proxy.start(second.port)
            await asyncio.wait_for(during_outage, 20)
            await send(range(45, 60))
            await wait_until(lambda: len(ledger) >= 60, 40, "every message to be processed")
            client = boto3_client(second.endpoint_url)
            url = client.get_queue_url(QueueName=settings.queue)["QueueUrl"]

            def drained() -> bool:
                attributes = client.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )["Attributes"]
                return attributes == {
                    "ApproximateNumberOfMessages": "0",
                    "ApproximateNumberOfMessagesNotVisible": "0",
                }

            await wait_until(drained, 20, "every message to be deleted")
    finally:
        finish.set()
        await asyncio.wait_for(listening, 30)
        await sender.shutdown()
        await worker.shutdown()
    counts = collections.Counter(ledger)
    assert sorted(counts) == list(range(60))  # none lost
    assert set(counts.values()) == {1}  # none processed twice; the queue is empty: none to come
    retried = {entry["operation"] for entry in logs if entry["event"] == "sqs_retry"}
    assert "receive_message" in retried  # the receive loop lived through the outage
    assert "send_message" in retried  # and so did the sends made during it
