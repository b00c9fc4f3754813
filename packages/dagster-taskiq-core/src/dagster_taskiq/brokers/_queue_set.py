"""One worker, several queues: ``dagster-taskiq worker --queue steps.fifo:3 --queue bulk.fifo``.

A :class:`QueueSet` is a broker made of one broker of the backend per queue. Its ``listen()``
keeps one receive in flight on each and, when the worker asks for a message, takes one from the
queues that have one ready by smooth weighted round robin (nginx's): with queues of weights 3
and 1 both holding messages, three of every four messages come from the first, evenly spread,
and a queue with messages is never passed over for long (no starvation). A queue with nothing
ready costs nothing but its receive in flight (a long poll). Message control (lease extension,
release) and acks go to the broker the message came from; a message received but never handed
to the worker is released when the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

from taskiq import AsyncBroker
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage

from dagster_taskiq.errors import DagsterTaskIQError
from dagster_taskiq.messaging import (
    MessageControl,
    Origin,
    SupportsMessageControl,
    SupportsOrigin,
    SupportsQueueDepth,
    SupportsReceiveLimit,
)

__all__ = ["QueueSet", "WeightedQueue"]

CLOSE_TIMEOUT = 10.0
"""Seconds a stopping ``QueueSet`` waits for its cancelled receives to end."""


@dataclasses.dataclass(frozen=True)
class WeightedQueue:
    """A queue a worker reads, and its share (``weight``) when several have messages."""

    name: str
    weight: int = 1

    @classmethod
    def parse(cls, text: str) -> WeightedQueue:
        """``NAME`` or ``NAME:WEIGHT`` (a whole number >= 1); DagsterTaskIQError naming the
        value and the fix."""
        name, sep, weight_text = text.rpartition(":")
        if not sep:
            name, weight_text = text, "1"
        if not name:
            raise DagsterTaskIQError(f"--queue {text!r}: give a queue name, e.g. steps.fifo:2")
        try:
            weight = int(weight_text)
        except ValueError:
            raise DagsterTaskIQError(
                f"--queue {text!r}: the weight after ':' must be a whole number >= 1, e.g. {name}:2"
            ) from None
        if weight < 1:
            raise DagsterTaskIQError(
                f"--queue {text!r}: the weight must be >= 1 (got {weight}), e.g. {name}:1"
            )
        return cls(name, weight)

    @classmethod
    def parse_all(cls, texts: Sequence[str]) -> list[WeightedQueue]:
        """Each of ``texts`` (:meth:`parse`), each queue named once."""
        queues = [cls.parse(text) for text in texts]
        names = [queue.name for queue in queues]
        for name in names:
            if names.count(name) > 1:
                raise DagsterTaskIQError(f"--queue {name!r} is given twice: name each queue once")
        return queues


class QueueSet(AsyncBroker):
    """Brokers of one backend on several queues, read as one (see the module's docstring)."""

    def __init__(self, brokers: Sequence[tuple[AsyncBroker, int]]) -> None:
        if not brokers:
            raise DagsterTaskIQError("a QueueSet needs at least one queue")
        super().__init__()
        self.brokers = [broker for broker, _ in brokers]
        self.weights = [weight for _, weight in brokers]
        self.formatter = self.brokers[0].formatter

    def __repr__(self) -> str:
        pairs = zip(self.brokers, self.weights, strict=True)
        return f"QueueSet({', '.join(f'{b!r}:{w}' for b, w in pairs)})"

    async def startup(self) -> None:
        await super().startup()
        for broker in self.brokers:
            broker.is_worker_process = self.is_worker_process
            await broker.startup()

    async def shutdown(self) -> None:
        for broker in self.brokers:
            await broker.shutdown()
        await super().shutdown()

    async def kick(self, message: BrokerMessage) -> None:
        """Send through the first queue's broker (its ``queue`` label routes it)."""
        await self.brokers[0].kick(message)

    def limit_receives(self, startable: Callable[[], int]) -> None:
        for broker in self.brokers:
            if isinstance(broker, SupportsReceiveLimit):
                broker.limit_receives(startable)

    def message_control(self, message: AckableMessage) -> MessageControl | None:
        for broker in self.brokers:
            if isinstance(broker, SupportsMessageControl):
                control = broker.message_control(message)
                if control is not None:
                    return control
        return None

    def step_queue(self, label: object = None) -> str:
        """The first queue's broker's name for a ``queue`` label (``SupportsOrigin``)."""
        first = self.brokers[0]
        if not isinstance(first, SupportsOrigin):
            raise DagsterTaskIQError(f"{type(first).__name__} cannot name its queues")
        return first.step_queue(label)

    async def queue_depths(self) -> dict[str, int]:
        """Every queue's count of waiting messages (``SupportsQueueDepth``)."""
        depths: dict[str, int] = {}
        for broker in self.brokers:
            if isinstance(broker, SupportsQueueDepth):
                depths.update(await broker.queue_depths())
        return depths

    def origin(self, message: AckableMessage) -> Origin | None:
        """The queue (of those read) a message came from, from the broker that holds it."""
        for broker in self.brokers:
            if isinstance(broker, SupportsOrigin):
                origin = broker.origin(message)
                if origin is not None:
                    return origin
        return None

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        streams: list[AsyncIterator[Any]] = [broker.listen() for broker in self.brokers]
        pending: dict[int, asyncio.Future[Any]] = {
            i: asyncio.ensure_future(anext(stream)) for i, stream in enumerate(streams)
        }
        credit = [0] * len(streams)
        try:
            while pending:
                ready = [i for i, future in pending.items() if future.done()]
                if not ready:
                    await asyncio.wait(pending.values(), return_when=asyncio.FIRST_COMPLETED)
                    continue
                chosen = _choose(ready, self.weights, credit)
                future = pending.pop(chosen)
                try:
                    message = future.result()
                except StopAsyncIteration:
                    continue  # that queue's broker stopped listening
                pending[chosen] = asyncio.ensure_future(anext(streams[chosen]))
                yield message
        finally:
            await self._close(pending, streams)

    async def _close(
        self, pending: dict[int, asyncio.Future[Any]], streams: list[AsyncIterator[Any]]
    ) -> None:
        """Release what was received and not handed on; close every queue's stream."""
        waiting = [future for future in pending.values() if not future.done()]
        for future in waiting:
            future.cancel()
        if waiting:
            # Bounded: a receive that ignores its cancel must not keep a stopping worker.
            await asyncio.wait(waiting, timeout=CLOSE_TIMEOUT)
        for future in pending.values():
            if not future.done() or future.cancelled() or future.exception() is not None:
                continue  # still receiving (its message, if any, comes back by itself), or none
            message = future.result()
            control = self.message_control(message) if isinstance(message, AckableMessage) else None
            if control is not None:
                with contextlib.suppress(Exception):
                    await control.release()
        for stream in streams:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


def _choose(ready: list[int], weights: list[int], credit: list[int]) -> int:
    """Smooth weighted round robin over the ``ready`` queues (``credit`` updated in place)."""
    total = 0
    for i in ready:
        credit[i] += weights[i]
        total += weights[i]
    chosen = max(ready, key=lambda i: credit[i])
    credit[chosen] -= total
    return chosen
