"""The RabbitMQ broker on the real RabbitMQ: what is RabbitMQ's own (connections as leases,
quorum-queue delivery limits, declarations, the deduplication record, reconnects).

The guarantees every backend shares (one message per request, release, lease, dead letters,
several queues) are the broker conformance suite's (``dagster_taskiq_testing``).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from structlog.testing import capture_logs

from dagster_taskiq.messaging import LABEL_QUEUE
from dagster_taskiq_rabbitmq import (
    AckError,
    RabbitMqBroker,
    RabbitMqConfigurationError,
    RabbitMqSettings,
    RecentSends,
)
from dagster_taskiq_testing.broker_helpers import (
    PATIENCE,
    Listener,
    control_of,
    debug_logs,
    step_message,
)
from dagster_taskiq_testing.servers import EndpointProxy


def test_the_visibility_timeout_is_the_connections_heartbeat() -> None:
    settings = RabbitMqSettings(
        url="amqp://guest:guest@127.0.0.1:5672/?heartbeat=3", visibility_timeout=7
    )
    assert settings.connection_url.endswith("?heartbeat=7")


def test_the_deduplication_record_forgets_after_its_window() -> None:
    recent = RecentSends(window=0.0)
    recent.remember("a")
    assert not recent.seen("a")  # a window of 0 keeps nothing
    recent = RecentSends(window=3600, capacity=2)
    for identity in "abc":
        recent.remember(identity)
    assert (recent.seen("a"), recent.seen("b"), recent.seen("c")) == (False, True, True)


async def test_a_dead_consumers_message_is_requeued_at_once_and_counted(harness: Any) -> None:
    sender = await harness.broker()
    first = await harness.broker()
    await sender.kick(step_message("run-1:add"))
    messages = Listener(first)
    held = await messages.receive()
    assert control_of(first, held).receive_count == 1
    await first.shutdown()  # the connection closes: RabbitMQ requeues what it held
    harness.brokers.remove(first)
    second = await harness.broker()
    again = Listener(second)
    received = await again.receive()
    assert received.data == held.data
    assert control_of(second, received).receive_count == 2
    with pytest.raises(AckError):
        await held.ack()  # its channel is gone: another consumer holds the message now
    await received.ack()
    assert await harness.ready() == 0
    await again.close()


async def test_a_queue_with_other_arguments_is_refused_naming_the_setting(harness: Any) -> None:
    await harness.broker(max_deliveries=2)
    broker = RabbitMqBroker(harness.settings(max_deliveries=4))
    with pytest.raises(RabbitMqConfigurationError) as raised:
        await broker.startup()
    text = str(raised.value)
    assert "x-delivery-limit" in text
    assert "max_deliveries" in text


async def test_a_send_to_a_deleted_queue_declares_it_again(harness: Any) -> None:
    broker = await harness.broker()
    other = f"{harness.queue}-other"
    harness.queues.update({other, f"{other}-dlq"})
    routed = step_message("run-1:add")
    routed.labels[LABEL_QUEUE] = other
    await broker.kick(routed)
    assert await harness.ready(other) == 1
    await harness.delete_queue(other)
    routed = step_message("run-1:mul")
    routed.labels[LABEL_QUEUE] = other
    with capture_logs() as logs:
        await broker.kick(routed)
    assert await harness.ready(other) == 1
    assert any(log["event"] == "rabbitmq_retry" for log in logs)


async def test_a_receive_rides_out_a_lost_connection_and_a_held_message_goes_back(
    harness: Any, proxy: EndpointProxy
) -> None:
    sender = await harness.broker()
    through_proxy = await harness.broker(
        url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", retry_attempts=20, retry_timeout=20
    )
    await sender.kick(step_message("run-1:add"))
    messages = Listener(through_proxy)
    held = await messages.receive()
    with debug_logs(), capture_logs() as logs:
        proxy.kill()  # the held message's connection is gone: RabbitMQ requeues it
        waiting = asyncio.ensure_future(messages.receive())
        await asyncio.sleep(0.5)
        proxy.start()
        received = await asyncio.wait_for(waiting, PATIENCE)
    assert received.data == held.data
    assert any(log["event"] == "rabbitmq_retry" for log in logs)
    with pytest.raises(AckError):
        await held.ack()
    await received.ack()
    assert await harness.ready() == 0
    await messages.close()


async def test_a_silent_consumer_loses_its_message_after_the_heartbeat_timeout(
    harness: Any, proxy: EndpointProxy
) -> None:
    """The lease on RabbitMQ: a consumer whose connection falls silent (a paused process, a cut
    network) for one to two heartbeat timeouts (``visibility_timeout``) has its connection
    closed by RabbitMQ, which requeues what it held."""
    silent = await harness.broker(
        url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", visibility_timeout=1.0
    )
    await silent.kick(step_message("run-1:add"))
    held = await Listener(silent).receive()
    proxy.hold(re.compile(b"\\x08\\x00\\x00\\x00\\x00\\x00\\x00\\xce"))  # its next heartbeat
    other = Listener(await harness.broker())
    received = await other.receive()
    assert received.data == held.data
    assert control_of(harness.brokers[-1], received).receive_count == 2
    await received.ack()
    proxy.release()
    await other.close()
