"""``QueueSet``: one worker reading several queues, weighted, with no queue starved, on the
in-memory SQS stub (every backend's broker goes through the same class)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from taskiq.acks import AckableMessage

from dagster_taskiq.backends import create_listener
from dagster_taskiq.brokers import QueueSet, WeightedQueue
from dagster_taskiq.errors import DagsterTaskIQError
from dagster_taskiq_nats import NatsSettings
from dagster_taskiq_rabbitmq import RabbitMqSettings
from dagster_taskiq_redis import RedisSettings
from dagster_taskiq_sqs import SqsSettings
from dagster_taskiq_testing import InMemorySqs, InMemorySqsBroker
from dagster_taskiq_testing.broker_helpers import step_message


def _broker(sqs: InMemorySqs, queue: str) -> InMemorySqsBroker:
    settings = SqsSettings(
        queue_name=queue,
        create_queues_if_missing=True,
        wait_time_seconds=1,
        visibility_timeout=30,
    )
    return InMemorySqsBroker(settings, sqs=sqs)


async def _fill(broker: InMemorySqsBroker, run: str, count: int) -> None:
    for n in range(count):
        await broker.kick(step_message(f"{run}:step_{n}", body=f"{run}:{n}".encode()))


def _source(message: AckableMessage) -> str:
    return message.data.decode().split(":")[0]


async def _take(queues: QueueSet, count: int) -> list[AckableMessage]:
    taken = []
    messages = queues.listen()
    for _ in range(count):
        message = await asyncio.wait_for(anext(messages), 10)
        taken.append(message)
        await _ack(message)
    await messages.aclose()
    return taken


@contextlib.asynccontextmanager
async def _queue_set(*queues: tuple[str, int]) -> AsyncIterator[tuple[InMemorySqs, QueueSet]]:
    """A started ``QueueSet`` over stub brokers of ``queues`` (name, weight) of one account."""
    sqs = InMemorySqs()
    queue_set = QueueSet([(_broker(sqs, name), weight) for name, weight in queues])
    await queue_set.startup()
    try:
        yield sqs, queue_set
    finally:
        await queue_set.shutdown()


async def _ack(message: AckableMessage) -> None:
    acked = message.ack()
    if acked is not None:
        await acked


async def test_two_queues_share_by_weight_and_neither_is_starved() -> None:
    async with _queue_set(("busy.fifo", 3), ("quiet.fifo", 1)) as (_, queues):
        busy, quiet = queues.brokers
        await _fill(busy, "busy", 30)
        await _fill(quiet, "quiet", 10)
        taken = [_source(m) for m in await _take(queues, 40)]
    assert Counter(taken) == {"busy": 30, "quiet": 10}
    # While both had messages: three from the busy queue for one from the quiet one, spread
    # out (the quiet queue waits at most three messages), until one of them is empty.
    first = taken[:36]
    assert Counter(first[:8]) == {"busy": 6, "quiet": 2}
    gaps = [i for i, source in enumerate(first) if source == "quiet"]
    starts = [-1, *gaps[:-1]]
    assert all(later - earlier <= 4 for earlier, later in zip(starts, gaps, strict=True)), taken


async def test_a_queue_with_nothing_does_not_hold_back_the_others() -> None:
    async with _queue_set(("empty.fifo", 5), ("full.fifo", 1)) as (_, queues):
        await _fill(queues.brokers[1], "full", 4)
        taken = [_source(m) for m in await _take(queues, 4)]
    assert taken == ["full"] * 4


async def test_controls_and_acks_go_to_the_queue_a_message_came_from() -> None:
    async with _queue_set(("first.fifo", 1), ("second.fifo", 1)) as (sqs, queues):
        first, second = queues.brokers
        await _fill(second, "second", 1)
        messages = queues.listen()
        message = await asyncio.wait_for(anext(messages), 10)
        assert queues.message_control(message) is not None
        assert first.message_control(message) is None
        assert second.message_control(message) is not None
        await _ack(message)
        assert queues.message_control(message) is None  # acked: no longer held
        await messages.aclose()
    assert sqs.messages("second.fifo") == []


async def test_what_was_received_and_not_handed_on_is_released_when_listening_stops() -> None:
    async with _queue_set(("one.fifo", 1), ("two.fifo", 1)) as (sqs, queues):
        one, two = queues.brokers
        await _fill(one, "one", 1)
        await _fill(two, "two", 1)
        messages = queues.listen()
        handed = await asyncio.wait_for(anext(messages), 10)
        await asyncio.sleep(0.5)  # the other queue's receive in flight brings its message
        await messages.aclose()
        other = "two" if _source(handed) == "one" else "one"
        # Released at once: visible again for the next worker, not 30 s of visibility later.
        assert len(sqs.visible_messages(f"{other}.fifo")) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("steps.fifo", WeightedQueue("steps.fifo", 1)), ("bulk:3", WeightedQueue("bulk", 3))],
)
def test_a_queue_is_a_name_and_an_optional_weight(text: str, expected: WeightedQueue) -> None:
    assert WeightedQueue.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("steps:0", "the weight must be >= 1"),
        ("steps:many", "must be a whole number >= 1"),
        (":2", "give a queue name"),
    ],
)
def test_a_bad_queue_is_refused_naming_the_option(text: str, fragment: str) -> None:
    with pytest.raises(DagsterTaskIQError, match=fragment) as raised:
        WeightedQueue.parse(text)
    assert f"--queue {text!r}" in str(raised.value)


def test_a_worker_with_several_queues_gets_a_broker_per_queue() -> None:
    listener = create_listener(
        "memory",
        {"queue_name": "steps.fifo", "create_queues_if_missing": True},
        [WeightedQueue("urgent.fifo", 4), WeightedQueue("steps.fifo")],
    )
    assert isinstance(listener, QueueSet)
    queues = [b.settings.queue for b in listener.brokers]  # type: ignore[attr-defined]
    assert queues == ["urgent.fifo", "steps.fifo"]
    assert listener.weights == [4, 1]
    one = create_listener("memory", {"create_queues_if_missing": True}, [WeightedQueue("b.fifo")])
    assert one.settings.queue == "b.fifo"  # type: ignore[attr-defined]
    with pytest.raises(DagsterTaskIQError, match=r"'a\.fifo' is given twice"):
        create_listener("memory", {}, [WeightedQueue("a.fifo"), WeightedQueue("a.fifo", 2)])


def test_each_backend_names_its_queue_in_its_own_setting() -> None:
    assert SqsSettings().for_queue("urgent.fifo") == {"queue_name": "urgent.fifo"}
    assert RabbitMqSettings().for_queue("urgent") == {"queue_name": "urgent"}
    assert RedisSettings().for_queue("urgent") == {"stream": "urgent"}
    # A NATS stream holds the subjects it was made with: another subject, another stream.
    assert NatsSettings(stream="STEPS").for_queue("steps.urgent") == {
        "subject": "steps.urgent",
        "stream": "STEPS_steps_urgent",
    }


async def test_a_priority_lane_overtakes_a_backlog_within_one_receive() -> None:
    """200 low-priority steps queued; a high-priority step sent while the worker works through
    them is the next one it takes (lane weights 9 and 1), not the 201st."""
    async with _queue_set(("urgent.fifo", 9), ("steps.fifo", 1)) as (sqs, queues):
        urgent, steps = queues.brokers
        await _fill(steps, "low", 200)
        messages = queues.listen()
        for _ in range(5):
            await _ack(await asyncio.wait_for(anext(messages), 10))
        await _fill(urgent, "high", 1)
        # The urgent lane's receive in flight (a long poll) brings it back.
        for _ in range(100):
            if sqs.in_flight_messages("urgent.fifo"):
                break
            await asyncio.sleep(0.02)
        taken = await asyncio.wait_for(anext(messages), 10)
        assert _source(taken) == "high"
        await _ack(taken)
        await messages.aclose()
    assert len(sqs.messages("steps.fifo")) == 195  # the backlog waits its turn
