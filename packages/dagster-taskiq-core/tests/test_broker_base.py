"""``BrokerBase`` on an in-memory transport: delivery states, message control, heartbeat, listen.

The backends' own tests (and the conformance suite) run the same base on real services; these
pin the base's rules without a service: which messages get a control, what a settled delivery
refuses, what the heartbeat extends, and what ``listen()`` gives back when it is closed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest
from structlog.testing import capture_logs
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage

from dagster_taskiq.brokers import BrokerBase, Delivery, DeliveryPolicy, DeliveryState
from dagster_taskiq.errors import AckError


class MemoryBroker(BrokerBase):
    """A transport of a list: what was sent waits in ``queue``; acts are recorded in ``acts``."""

    event_prefix = "memory"

    def __init__(self, *, batch: int = 1, heartbeat_every: float = 60.0) -> None:
        super().__init__()
        self._hold_deliveries(
            DeliveryPolicy(
                queue="q",
                visibility_timeout=30.0,
                heartbeat_enabled=True,
                heartbeat_every=heartbeat_every,
                dead_letter_queue="q-dead",
                max_deliveries=2,
            )
        )
        self.queue: deque[tuple[str, bytes, int]] = deque()
        self.acts: list[tuple[str, str, float | None]] = []
        self.batch = batch
        self._ids = 0

    async def kick(self, message: BrokerMessage) -> None:
        self._ids += 1
        self.queue.append((str(self._ids), message.message, 1))

    async def _receive(self) -> list[Delivery]:
        taken = []
        while self.queue and len(taken) < self.batch:
            message_id, body, count = self.queue.popleft()
            taken.append(
                self._hold(
                    Delivery(
                        broker=self,
                        queue="q",
                        handle=f"{message_id}/{count}",
                        message_id=message_id,
                        receive_count=count,
                        step={},
                        body=body,
                    )
                )
            )
        await asyncio.sleep(0)
        return taken

    async def _delete(self, delivery: Delivery) -> None:
        self.acts.append(("delete", str(delivery.message_id), None))

    async def _extend(self, delivery: Delivery, seconds: float) -> float:
        self.acts.append(("extend", str(delivery.message_id), seconds))
        return seconds

    async def _give_back(self, delivery: Delivery) -> None:
        self.acts.append(("give_back", str(delivery.message_id), None))
        assert delivery.receive_count is not None
        self.queue.append((str(delivery.message_id), delivery.body, delivery.receive_count + 1))


def _message(body: bytes = b"{}") -> BrokerMessage:
    return BrokerMessage(task_id="t", task_name="n", message=body, labels={})


async def test_a_control_only_for_a_held_delivery_of_this_broker() -> None:
    broker, other = MemoryBroker(), MemoryBroker()
    await broker.kick(_message())
    messages = broker.listen()
    message = await anext(messages)
    control = broker.message_control(message)
    assert control is not None
    assert control.receive_count == 1
    assert other.message_control(message) is None

    async def plain_ack() -> None:
        pass

    assert broker.message_control(AckableMessage(data=b"", ack=plain_ack)) is None
    await message.ack()
    assert broker.message_control(message) is None
    await messages.aclose()


async def test_ack_is_once_and_a_released_delivery_refuses_ack_and_extension() -> None:
    broker = MemoryBroker()
    await broker.kick(_message())
    await broker.kick(_message())
    messages = broker.listen()
    first, second = await anext(messages), await anext(messages)
    await first.ack()
    await first.ack()  # acking twice is harmless
    assert [act for act in broker.acts if act[0] == "delete"] == [("delete", "1", None)]
    control = broker.message_control(second)
    assert control is not None
    await control.extend_lease(12.5)
    await control.release()
    delivery = second.ack.__self__  # type: ignore[attr-defined]
    assert delivery.state is DeliveryState.RELEASED
    with pytest.raises(AckError, match="released"):
        await second.ack()
    with pytest.raises(AckError, match="already released"):
        await broker.extend_lease(delivery, 5)
    assert broker.acts[1:] == [("extend", "2", 12.5), ("give_back", "2", None)]
    redelivered = await anext(messages)  # release leads to redelivery
    assert broker.message_control(redelivered) is not None
    assert redelivered.ack.__self__.receive_count == 2  # type: ignore[attr-defined]
    await messages.aclose()


async def test_the_heartbeat_extends_until_a_control_takes_over() -> None:
    broker = MemoryBroker(heartbeat_every=0.01)
    await broker.kick(_message())
    messages = broker.listen()
    message = await anext(messages)
    for _ in range(100):
        if ("extend", "1", 30.0) in broker.acts:
            break
        await asyncio.sleep(0.01)
    assert ("extend", "1", 30.0) in broker.acts  # the visibility timeout again
    control = broker.message_control(message)
    assert control is not None
    await control.extend_lease(7)
    beats = len(broker.acts)
    await asyncio.sleep(0.05)
    assert len(broker.acts) == beats  # taken over: no more beats of its own
    await message.ack()
    await messages.aclose()


async def test_closing_listen_releases_what_was_received_and_not_yielded() -> None:
    broker = MemoryBroker(batch=3)
    for _ in range(3):
        await broker.kick(_message())
    messages = broker.listen()
    first = await anext(messages)
    await messages.aclose()
    assert [act[:2] for act in broker.acts] == [("give_back", "2"), ("give_back", "3")]
    assert broker.message_control(first) is not None  # what was yielded stays the consumer's
    await first.ack()


async def test_the_last_delivery_before_the_dead_letter_queue_is_announced() -> None:
    broker = MemoryBroker()
    broker.queue.append(("9", b"{}", 2))
    messages = broker.listen()
    with capture_logs() as logs:
        message = await anext(messages)
    [warning] = [log for log in logs if log["event"].endswith("before_dead_letter_queue")]
    assert warning["event"] == "memory_last_delivery_before_dead_letter_queue"
    assert (warning["dead_letter_queue"], warning["receive_count"]) == ("q-dead", 2)
    await message.ack()
    await messages.aclose()


def test_log_fields_name_queue_message_and_receive_count() -> None:
    delivery = Delivery(
        broker=MemoryBroker(),
        queue="q",
        handle="h",
        message_id="m",
        receive_count=3,
        step={"dagster_taskiq_key": "run:a", "dagster_taskiq_retry_number": "1"},
        body=b"",
    )
    fields: dict[str, Any] = delivery.log_fields()
    assert fields == {
        "queue": "q",
        "message_id": "m",
        "receive_count": 3,
        "key": "run:a",
        "retry_number": 1,
        "enqueue_attempt": None,
    }
