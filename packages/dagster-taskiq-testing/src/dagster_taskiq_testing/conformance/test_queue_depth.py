"""Every backend says how many messages wait in its queue (the worker's queue-depth metric):
sent and not received count, a received (held) one does not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dagster_taskiq.messaging import SupportsOrigin, SupportsQueueDepth
from dagster_taskiq_testing.broker_helpers import PATIENCE, Listener, step_message
from dagster_taskiq_testing.conformance._adapters import BrokerUnderTest


async def _depth_becomes(broker: object, expected: int | Callable[[int], bool]) -> bool:
    """True once the broker's count of waiting messages is ``expected`` (or passes it, a
    test); services count late: SQS's numbers are approximate, RabbitMQ refreshes its own every
    few seconds."""
    assert isinstance(broker, SupportsQueueDepth)
    assert isinstance(broker, SupportsOrigin)
    accepts = expected if callable(expected) else expected.__eq__
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while not accepts((await broker.queue_depths())[broker.step_queue()]):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def test_the_queue_depth_counts_the_messages_waiting(subject: BrokerUnderTest) -> None:
    broker = await subject.broker(heartbeat=True, visibility_timeout=5.0)
    assert await _depth_becomes(broker, 0)
    for n in range(3):
        await broker.kick(step_message(f"run-1:s{n}"))
    assert await _depth_becomes(broker, 3)
    messages = Listener(broker)
    received = await messages.receive()
    # held by its consumer: not waiting (an SQS receive may take the others too)
    assert await _depth_becomes(broker, lambda depth: depth <= 2)
    ack = received.ack()
    if ack is not None:
        await ack
    await messages.close()
