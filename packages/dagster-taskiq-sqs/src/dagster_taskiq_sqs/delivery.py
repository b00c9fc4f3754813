"""One received SQS message (a *delivery*) and the control the worker gets over it.

A delivery is what one ``ReceiveMessage`` handed out: its receipt handle is valid only until the
message is received again. The broker keeps one :class:`Delivery` per message that ``listen()``
yielded and has not been settled (acked or released); :class:`SqsMessageControl` is the
:class:`dagster_taskiq.messaging.MessageControl` of a delivery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

from dagster_taskiq_sqs.message_ids import StepLabels
from dagster_taskiq_sqs.settings import MAX_VISIBILITY_TIMEOUT

__all__ = ["Delivery", "SqsMessageControl", "VisibilityOwner", "step_labels_of"]


@dataclasses.dataclass(kw_only=True, eq=False)
class Delivery:
    """A received message, until it is acked or released."""

    queue: str
    queue_url: str
    receipt_handle: str
    message_id: str | None
    receive_count: int | None
    step: StepLabels
    received_at: float = dataclasses.field(default_factory=time.monotonic)
    heartbeat: asyncio.Task[None] | None = None
    """The broker's own visibility heartbeat, until a caller takes over through the control."""
    settled: str | None = None
    """``"acked"`` or ``"released"`` once it is."""

    def log_fields(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "message_id": self.message_id,
            "receive_count": self.receive_count,
            **self.step.log_fields(),
        }


def step_labels_of(message_attributes: Mapping[str, Any] | None) -> StepLabels:
    """The step labels a message carries as SQS message attributes (set by the broker)."""
    values: dict[str, Any] = {}
    for name, attribute in (message_attributes or {}).items():
        if isinstance(attribute, Mapping) and "StringValue" in attribute:
            values[name] = attribute["StringValue"]
    return StepLabels(values)


def visibility_seconds(seconds: float) -> int:
    """Seconds as SQS takes them: whole, rounded up, within 0-12 hours."""
    return max(0, min(MAX_VISIBILITY_TIMEOUT, math.ceil(seconds)))


class VisibilityOwner(Protocol):
    """What a control needs from its broker."""

    def stop_heartbeat(self, delivery: Delivery) -> None: ...

    async def change_visibility(self, delivery: Delivery, seconds: int, *, event: str) -> None: ...


class SqsMessageControl:
    """Extend or release one delivery (``dagster_taskiq.messaging.MessageControl``).

    The first call takes the delivery's visibility over from the broker's own heartbeat: from
    then on the caller (the dagster-taskiq worker, which heartbeats its store lease and the
    message together) decides how long the message stays invisible.
    """

    def __init__(self, owner: VisibilityOwner, delivery: Delivery) -> None:
        self._owner = owner
        self.delivery = delivery

    @property
    def receive_count(self) -> int | None:
        return self.delivery.receive_count

    async def extend_lease(self, seconds: float) -> None:
        """Keep the message invisible for ``seconds`` (rounded up) from now."""
        self._owner.stop_heartbeat(self.delivery)
        await self._owner.change_visibility(
            self.delivery, visibility_seconds(seconds), event="sqs_visibility_extended"
        )

    async def release(self) -> None:
        """Make the message visible to other consumers now (``ChangeMessageVisibility`` 0)."""
        self._owner.stop_heartbeat(self.delivery)
        await self._owner.change_visibility(self.delivery, 0, event="sqs_message_released")
        self.delivery.settled = "released"
