"""One received message (a *delivery*), its state, and the control a worker gets over it.

A delivery lives from the receive that handed it to this consumer until it is settled: acked
(deleted from the queue) or released (given back for another delivery). Its transport handle
(SQS receipt handle, Redis entry id, NATS stream sequence) is valid only while it is held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections.abc import Mapping
from typing import Any, Protocol

from dagster_taskiq.messaging import step_log_fields

__all__ = ["Delivery", "DeliveryControl", "DeliveryOwner", "DeliveryState"]


class DeliveryState(enum.Enum):
    """Where a delivery stands. ``HELD`` -> ``ACKED`` or ``HELD`` -> ``RELEASED``; both final."""

    HELD = "held"
    """Received by this consumer and not settled: invisible to others while its lease lasts."""
    ACKED = "acked"
    """Deleted from the queue by its ``ack``; acking again does nothing."""
    RELEASED = "released"
    """Given back for redelivery; another consumer may hold it now, so it can no longer be
    acked or extended through this delivery."""


class DeliveryOwner(Protocol):
    """What a delivery and its control ask of the broker that received it."""

    async def ack_delivery(self, delivery: Delivery) -> None: ...

    async def extend_lease(self, delivery: Delivery, seconds: float) -> None: ...

    async def release(self, delivery: Delivery) -> None: ...

    def stop_heartbeat(self, delivery: Delivery) -> None: ...


@dataclasses.dataclass(kw_only=True, eq=False)
class Delivery:
    """A message this broker's ``listen()`` received, until it is acked or released."""

    broker: DeliveryOwner
    queue: str
    """The queue (SQS queue, Redis stream, NATS stream) it was received from."""
    handle: str
    """What the transport settles it by: SQS receipt handle, Redis entry id, NATS sequence."""
    message_id: str | None
    receive_count: int | None
    """How many times it was received, this time included (None if the service cannot say)."""
    step: Mapping[str, str]
    """The step labels it carries beside its body (``messaging.STEP_LABELS``)."""
    body: bytes
    transport: Any = None
    """What else the transport needs to settle it (SQS: the queue URL; NATS: its ``Msg``)."""
    received_at: float = dataclasses.field(default_factory=time.monotonic)
    heartbeat: asyncio.Task[None] | None = None
    """The broker's own lease heartbeat, until a caller takes over through the control."""
    state: DeliveryState = DeliveryState.HELD

    def describe(self) -> str:
        return f"message {self.message_id} of queue {self.queue!r}"

    def log_fields(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "message_id": self.message_id,
            "receive_count": self.receive_count,
            **step_log_fields(self.step),
        }

    async def ack(self) -> None:
        """Delete the message from its queue (the ``ack`` of the message ``listen()`` yielded)."""
        await self.broker.ack_delivery(self)


class DeliveryControl:
    """Extend or release one delivery (``dagster_taskiq.messaging.MessageControl``).

    The first call takes the delivery's lease over from the broker's own heartbeat: from then on
    the caller (the dagster-taskiq worker, which heartbeats its store lease and the message
    together) decides how long the message stays invisible.
    """

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    @property
    def receive_count(self) -> int | None:
        return self.delivery.receive_count

    async def extend_lease(self, seconds: float) -> None:
        """Keep the message invisible to other consumers for ``seconds`` from now."""
        self.delivery.broker.stop_heartbeat(self.delivery)
        await self.delivery.broker.extend_lease(self.delivery, seconds)

    async def release(self) -> None:
        """Give the message back for redelivery now."""
        await self.delivery.broker.release(self.delivery)
