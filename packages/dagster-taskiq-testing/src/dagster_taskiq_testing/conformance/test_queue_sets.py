"""A worker reading several queues (``dagster-taskiq worker --queue a --queue b``), on every
backend: one ``QueueSet`` over a broker per queue takes from each by weight, starves none, and
acks go to the queue a message came from."""

from __future__ import annotations

import asyncio

from taskiq.acks import AckableMessage

from dagster_taskiq.brokers import QueueSet
from dagster_taskiq_testing.broker_helpers import PATIENCE, step_message
from dagster_taskiq_testing.conformance._adapters import BrokerUnderTest


async def _ack(message: AckableMessage) -> None:
    acked = message.ack()
    if acked is not None:
        await acked


async def test_several_queues_are_read_by_weight_and_none_is_starved(
    subject: BrokerUnderTest,
) -> None:
    busy = await subject.broker(queue="main", heartbeat=True)
    quiet = await subject.broker(queue="other", heartbeat=True)
    for n in range(6):
        await busy.kick(step_message(f"busy:s{n}", body=f"busy {n}".encode()))
    for n in range(2):
        await quiet.kick(step_message(f"quiet:s{n}", body=f"quiet {n}".encode()))
    assert await subject.holds(6, "main")
    assert await subject.holds(2, "other")

    queues = QueueSet([(busy, 3), (quiet, 1)])
    messages = queues.listen()
    taken = []
    for _ in range(8):
        message = await asyncio.wait_for(anext(messages), PATIENCE)
        taken.append(message.data.decode().split()[0])
        assert queues.message_control(message) is not None
        await _ack(message)
    await messages.aclose()

    assert sorted(taken) == ["busy"] * 6 + ["quiet"] * 2
    assert taken.index("quiet") < 5, taken  # three of the busy queue at most, then the quiet one
    assert await subject.holds(0, "main")
    assert await subject.holds(0, "other")
