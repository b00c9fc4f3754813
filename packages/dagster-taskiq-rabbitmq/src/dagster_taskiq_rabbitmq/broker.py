"""``RabbitMqBroker``: the RabbitMQ transport of dagster-taskiq, on taskiq-aio-pika.

It stays a normal TaskIQ ``AsyncBroker`` and keeps taskiq-aio-pika's constructor (the URL, the
prefetch, its ``Queue`` descriptions of the queues it uses); what every backend does with a
received message (deliveries, acks, leases, heartbeat, dead-letter logging) is core's
:class:`~dagster_taskiq.brokers.BrokerBase`. This module is RabbitMQ's part (why each replaces a
taskiq-aio-pika 0.6.1 behaviour: ``docs/design-notes.md``, section "RabbitMQ broker"):

* startup connects (two connections, as taskiq-aio-pika: one publishes, one receives, so a
  publisher blocked by a resource alarm never blocks acks) with the AMQP heartbeat timeout set to
  the visibility timeout, and declares the quorum queue and its dead-letter queue
  (:mod:`~dagster_taskiq_rabbitmq.queues`: delivery limit, at-least-once dead-lettering);
* a send goes to the queue its ``queue`` label names through the default exchange (the queue is
  declared before the first send to it), ``mandatory`` and confirmed by RabbitMQ; an identical
  resend by this broker within ``deduplication_window`` is dropped (RabbitMQ deduplicates
  nothing: see :class:`RecentSends`);
* a receive takes one message on a channel of its own (a consumer with prefetch 1, cancelled as
  soon as the message came): nothing is pushed ahead of the consumer, and each held message has
  its channel, so a channel closed under one message (consumer timeout, an ack RabbitMQ refused)
  gives back that message only;
* ack is ``basic.ack`` confirmed by a round trip on the same channel (``basic.qos``: RabbitMQ
  handles a channel's frames in order); release is ``basic.nack`` with requeue;
* the lease: RabbitMQ has no per-message visibility. A message stays with its consumer while the
  consumer's channel and connection live; it is requeued when the connection closes (a dead
  worker: at once) or falls silent for about one to two heartbeat timeouts (a paused or cut-off
  worker), and when it has stayed unacked past the server's ``consumer_timeout`` (30 minutes by
  default), which nothing the client sends extends. ``extend_lease`` therefore checks, with a
  round trip on the message's channel, that the message is still held, and raises ``AckError``
  when it is not; it cannot lengthen anything;
* dead letters: RabbitMQ moves a message returned more than ``max_deliveries - 1`` times to the
  dead-letter queue; ``receive_dead_letters()`` reads them with ``basic.get``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import DeliveryError
from taskiq import AsyncBroker
from taskiq.message import BrokerMessage
from taskiq_aio_pika import AioPikaBroker, Queue, QueueType

from dagster_taskiq.brokers import BrokerBase, Delivery
from dagster_taskiq.errors import AckError
from dagster_taskiq.messaging import (
    LABEL_QUEUE,
    STEP_LABELS,
    DeadLetter,
    hashed_identity,
    step_labels,
    step_log_fields,
)
from dagster_taskiq_rabbitmq import queues
from dagster_taskiq_rabbitmq.errors import (
    DagsterTaskIQRabbitMqError,
    QueueReturnedError,
    RabbitMqUnavailableError,
    is_transient,
)
from dagster_taskiq_rabbitmq.settings import RabbitMqSettings

__all__ = ["RabbitMqBroker", "RecentSends"]

_log = structlog.get_logger("dagster_taskiq_rabbitmq")
_IDLE_CHANNELS = 4
"""Channels kept open for the next receives once their message is settled."""


@dataclasses.dataclass(eq=False)
class _Held:
    """What settles a delivery: the channel it came on and RabbitMQ's message."""

    channel: AbstractChannel
    message: AbstractIncomingMessage


@dataclasses.dataclass(eq=False)
class _Letter:
    """A dead letter read and not yet acked (it goes back after the visibility timeout)."""

    message: AbstractIncomingMessage
    read_at: float = dataclasses.field(default_factory=time.monotonic)


def _alive(connection: AbstractConnection | None) -> bool:
    """Open, in aio-pika's view and in aiormq's beneath it (aio-pika learns of a lost
    connection a moment after aiormq)."""
    if connection is None or connection.is_closed:
        return False
    transport = getattr(connection, "transport", None)
    return transport is not None and not transport.connection.is_closed


class RecentSends:
    """The deduplication record: identities this broker published, for ``window`` seconds.

    It lives in the sending broker's memory (at most ``capacity`` identities, oldest dropped
    first). An identity is remembered only once RabbitMQ confirmed its publish, so a send that
    failed is never taken for a duplicate; a resend from another process, or one made while the
    first publish is still unconfirmed, is not caught: RabbitMQ then holds both, and the
    idempotency store runs the step once (a duplicate is acked unrun).
    """

    def __init__(self, window: float, capacity: int = 100_000) -> None:
        self.window = window
        self.capacity = capacity
        self._until: collections.OrderedDict[str, float] = collections.OrderedDict()

    def seen(self, identity: str) -> bool:
        """Whether ``identity`` was published within the window."""
        now = time.monotonic()
        while self._until and next(iter(self._until.values())) <= now:
            self._until.popitem(last=False)
        return identity in self._until

    def remember(self, identity: str) -> None:
        if self.window <= 0:
            return
        self._until.pop(identity, None)
        self._until[identity] = time.monotonic() + self.window
        while len(self._until) > self.capacity:
            self._until.popitem(last=False)


class RabbitMqBroker(BrokerBase, AioPikaBroker):
    """A TaskIQ broker on RabbitMQ quorum queues (``RabbitMqSettings``).

    It receives from ``settings.queue_name`` and sends there, or to the queue a message's
    ``queue`` label names.
    """

    settings: RabbitMqSettings

    event_prefix = "rabbitmq"
    service = "RabbitMQ"
    target_fields = ("url", "queue")
    unavailable_error = RabbitMqUnavailableError
    is_transient = staticmethod(is_transient)

    def __init__(self, settings: RabbitMqSettings) -> None:
        self.settings = settings
        dead = settings.dead_letter_queue
        super().__init__(
            settings.connection_url,
            qos=1,
            task_queues=[
                Queue(
                    name=settings.queue_name,
                    type=QueueType.QUORUM,
                    arguments=queues.queue_arguments(settings, settings.queue_name),
                )
            ],
            dead_letter_queue=Queue(name=dead or dead_letter_placeholder(settings)),
            label_for_routing=LABEL_QUEUE,
        )
        self._hold_deliveries(settings.delivery_policy())
        self.server = settings.redacted_url
        self._reader: AbstractConnection | None = None
        self._writer: AbstractConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._idle: list[AbstractChannel] = []
        self._declared: set[str] = set()
        self._letters: dict[int, _Letter] = {}
        self._letter_channel: AbstractChannel | None = None
        self._closing: set[asyncio.Task[Any]] = set()
        self.recent_sends = RecentSends(settings.deduplication_window)
        self._started = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(queue={self.settings.queue_name!r}, url={self.server!r})"

    # --- lifecycle ---------------------------------------------------------------------------

    async def startup(self) -> None:
        """Connect (with backoff) and declare the queue and its dead-letter queue."""
        queue = self.settings.queue_name
        try:
            await self._call("connect", self._connections)
            await self._call("declare", lambda: self._ensure_queue(queue))
        except BaseException:
            await self._close_connections()
            raise
        self._started = True
        _log.info(
            "rabbitmq_broker_started",
            queue=queue,
            dead_letter_queue=self.settings.dead_letter_queue,
            url=self.server,
            heartbeat=self.settings.heartbeat_seconds,
            worker=self.is_worker_process,
        )
        await AsyncBroker.startup(self)

    async def shutdown(self) -> None:
        """Stop heartbeats and close both connections (RabbitMQ requeues what was held)."""
        self.stop_heartbeats()
        self._started = False
        await self._close_connections()
        await AsyncBroker.shutdown(self)

    async def _close_connections(self) -> None:
        for connection in (self._reader, self._writer):
            if connection is not None and not connection.is_closed:
                try:
                    await connection.close()
                except Exception as exc:
                    _log.warning("rabbitmq_close_failed", error=f"{type(exc).__name__}: {exc}")
        self._reader = self._writer = self._publisher = self._letter_channel = None
        self._idle.clear()
        self._letters.clear()

    def _require_started(self) -> None:
        if not self._started:
            raise DagsterTaskIQRabbitMqError(
                f"{self!r} is not started: await broker.startup() before using it"
            )

    async def _connections(self) -> tuple[AbstractConnection, AbstractConnection]:
        """The receiving and the publishing connection, each opened again if it closed (its
        channels go with it: what they held is RabbitMQ's to requeue)."""
        if not _alive(self._reader):
            self._idle.clear()
            self._letters.clear()
            self._letter_channel = None
            self._reader = await self._connect("receive")
        if not _alive(self._writer):
            self._publisher = None
            self._writer = await self._connect("publish")
        assert self._reader is not None
        assert self._writer is not None
        return self._reader, self._writer

    async def _connect(self, role: str) -> AbstractConnection:
        name = f"dagster-taskiq {role} {socket.gethostname()}:{os.getpid()}"
        return await aio_pika.connect(
            self.settings.connection_url,
            timeout=self.settings.connect_timeout,
            client_properties={"connection_name": name},
        )

    async def _open_channel(self) -> AbstractChannel:
        """A new channel on the receiving connection."""
        reader, _ = await self._connections()
        return await reader.channel(publisher_confirms=False)

    async def _queue_depth(self) -> int:
        """The queue's ready messages (a passive declare on a channel of its own)."""

        async def count() -> int:
            channel = await self._open_channel()
            try:
                queue = await channel.declare_queue(self.settings.queue_name, passive=True)
                return int(queue.declaration_result.message_count or 0)
            finally:
                await channel.close()

        return await self._call("declare_queue", count)

    async def _ensure_queue(self, queue: str) -> None:
        if queue not in self._declared:
            await queues.ensure_queue(self._open_channel, self.settings, queue)
            self._declared.add(queue)

    # --- sending -----------------------------------------------------------------------------

    async def kick(self, message: BrokerMessage) -> None:
        """Publish to the message's queue and wait for RabbitMQ's confirm, unless this broker
        published an identical one within the deduplication window (same step key, retry number
        and enqueue attempt)."""
        self._require_started()
        queue = self.settings.step_queue(message.labels.get(LABEL_QUEUE))
        step = step_labels(message.labels)
        identity = hashed_identity(step, message.task_id)
        fields = {"task_id": message.task_id, **step_log_fields(step)}
        if self.recent_sends.seen(identity):
            _log.info("rabbitmq_duplicate_dropped", queue=queue, **fields)
            return
        amqp_message = aio_pika.Message(
            body=message.message,
            headers={"task_id": message.task_id, "task_name": message.task_name, **step},
            message_id=identity,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._call("publish", lambda: self._publish(queue, amqp_message), queue=queue)
        self.recent_sends.remember(identity)
        _log.debug("rabbitmq_message_sent", queue=queue, **fields)

    async def _publish(self, queue: str, message: aio_pika.Message) -> None:
        await self._ensure_queue(queue)
        if self._publisher is None or self._publisher.is_closed:
            _, writer = await self._connections()
            self._publisher = await writer.channel(publisher_confirms=True, on_return_raises=True)
        try:
            await self._publisher.default_exchange.publish(
                message, routing_key=queue, mandatory=True, timeout=self.settings.request_timeout
            )
        except DeliveryError as exc:  # returned (no such queue) or refused: declare again
            self._declared.discard(queue)
            raise QueueReturnedError(f"RabbitMQ did not take the message for {queue!r}") from exc

    # --- receiving ---------------------------------------------------------------------------

    async def _receive(self) -> list[Delivery]:
        """One message, or none after ``wait_time_seconds``."""
        self._require_started()
        got = await self._call("consume", self._consume_one)
        if got is None:
            return []
        channel, message = got
        headers = message.headers or {}
        count = headers.get("x-delivery-count")
        delivery = Delivery(
            broker=self,
            queue=self.settings.queue_name,
            handle=f"{id(channel)}:{message.delivery_tag}",
            message_id=message.message_id,
            # quorum queues count returns (x-delivery-count, absent on a first delivery)
            receive_count=int(count) + 1 if isinstance(count, int) else 1,
            step={name: str(headers[name]) for name in STEP_LABELS if name in headers},
            body=message.body,
            transport=_Held(channel, message),
        )
        return [self._hold(delivery)]

    async def _consume_one(self) -> tuple[AbstractChannel, AbstractIncomingMessage] | None:
        """A consumer with prefetch 1 on a channel of its own, cancelled once one message came
        (or after ``wait_time_seconds``). The channel then holds that message alone until it is
        settled. Cancelled itself, it closes the channel: RabbitMQ requeues what came."""
        channel = self._idle.pop() if self._idle else None
        if channel is None or channel.is_closed:
            channel = await self._open_channel()
            await channel.set_qos(prefetch_count=1, timeout=self.settings.request_timeout)
        came: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()

        async def on_message(message: AbstractIncomingMessage) -> None:
            if not came.done():
                came.set_result(message)

        done = False
        try:
            queue = await channel.get_queue(self.settings.queue_name, ensure=False)
            tag = await queue.consume(
                on_message, no_ack=False, timeout=self.settings.request_timeout
            )
            await asyncio.wait({came}, timeout=self.settings.wait_time_seconds)
            await queue.cancel(tag, timeout=self.settings.request_timeout)
            done = True
        finally:
            if not done:
                self._close_later(channel)
        if came.done():
            return channel, came.result()
        self._idle.append(channel)
        return None

    def _close_later(self, channel: AbstractChannel) -> None:
        """Close ``channel`` without waiting (from a cancelled or failed call)."""
        if channel.is_closed:
            return
        task = asyncio.ensure_future(channel.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    def _settled(self, channel: AbstractChannel) -> None:
        """``channel``'s message is settled: keep it for the next receive (a few at most)."""
        if len(self._idle) < _IDLE_CHANNELS and not channel.is_closed:
            self._idle.append(channel)
        else:
            self._close_later(channel)

    # --- acknowledgement, lease, release -------------------------------------------------------

    async def _delete(self, delivery: Delivery) -> None:
        held: _Held = delivery.transport
        try:
            await held.message.ack()
            await self._confirm(held.channel)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.forget(delivery)
            raise AckError(
                f"{delivery.describe()} could not be acked: its channel closed before RabbitMQ "
                f"confirmed the ack ({type(exc).__name__}: {exc}); unless the ack got through, "
                f"RabbitMQ has requeued it for another consumer"
            ) from exc
        self._settled(held.channel)

    async def _extend(self, delivery: Delivery, seconds: float) -> float:
        # RabbitMQ holds the message while its channel lives: nothing to lengthen, only to check.
        held: _Held = delivery.transport
        try:
            await self._confirm(held.channel)
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise AckError(
                f"{delivery.describe()} is no longer held: its channel closed "
                f"({type(exc).__name__}: {exc}) and RabbitMQ requeued it"
            ) from exc
        return self.settings.visibility_timeout

    async def _give_back(self, delivery: Delivery) -> None:
        held: _Held = delivery.transport
        try:
            await held.message.nack(requeue=True)
            await self._confirm(held.channel)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # The channel is gone: RabbitMQ requeued the message when it closed.
            self._close_later(held.channel)
            return
        self._settled(held.channel)

    async def _confirm(self, channel: AbstractChannel) -> None:
        """A round trip on ``channel``: RabbitMQ answers it after everything sent before on that
        channel (an ack, a nack) was handled; it fails if the channel is gone."""
        await channel.set_qos(prefetch_count=1, timeout=self.settings.request_timeout)

    # --- dead letters ------------------------------------------------------------------------

    async def receive_dead_letters(self, max_messages: int = 10) -> list[DeadLetter]:
        """Up to ``max_messages`` messages of the dead-letter queue (none without one).

        Each stays with this broker until its ``ack``; one left unacked longer than the
        visibility timeout goes back to the dead-letter queue at the next call. ``receive_count``
        is ``max_deliveries`` for a message dead-lettered by the delivery limit.
        """
        self._require_started()
        dead = self.settings.dead_letter_queue
        if dead is None:
            return []
        await self._call("nack", self._give_back_old_letters, queue=dead)
        letters = []
        for _ in range(max(1, max_messages)):
            got = await self._call("get", lambda: self._get_letter(dead), queue=dead)
            if got is None:
                break
            channel, message = got
            headers = message.headers or {}
            by_limit = headers.get("x-first-death-reason") == "delivery_limit"
            letters.append(
                self._dead_letter(
                    body=message.body,
                    message_id=message.message_id,
                    receive_count=self.settings.max_deliveries if by_limit else None,
                    step={name: str(headers[name]) for name in STEP_LABELS if name in headers},
                    delete=self._letter_ack(message, channel),
                )
            )
        return letters

    async def _letter_queue_channel(self) -> AbstractChannel:
        if self._letter_channel is None or self._letter_channel.is_closed:
            self._letters.clear()  # a closed channel gave its letters back
            self._letter_channel = await self._open_channel()
        return self._letter_channel

    async def _get_letter(
        self, dead: str
    ) -> tuple[AbstractChannel, AbstractIncomingMessage] | None:
        channel = await self._letter_queue_channel()
        queue = await channel.get_queue(dead, ensure=False)
        message = await queue.get(no_ack=False, fail=False, timeout=self.settings.request_timeout)
        if message is None:
            return None
        if message.delivery_tag is not None:
            self._letters[message.delivery_tag] = _Letter(message)
        return channel, message

    async def _give_back_old_letters(self) -> None:
        if self._letter_channel is None or self._letter_channel.is_closed:
            self._letters.clear()  # a closed channel gave its letters back
            return
        oldest = time.monotonic() - self.settings.visibility_timeout
        for tag, letter in list(self._letters.items()):
            if letter.read_at <= oldest:
                await letter.message.nack(requeue=True)
                del self._letters[tag]

    def _letter_ack(
        self, message: AbstractIncomingMessage, channel: AbstractChannel
    ) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            if (
                message.delivery_tag is None
                or self._letters.pop(message.delivery_tag, None) is None
            ):
                return  # acked already, or given back (then it is read again)
            try:
                await message.ack()
                await self._confirm(channel)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                _log.warning(
                    "rabbitmq_dead_letter_ack_lost",
                    dead_letter_queue=self.settings.dead_letter_queue,
                    message_id=message.message_id,
                    error=f"{type(exc).__name__}: {exc}",
                    reason="its channel closed: RabbitMQ gave the letter back to the queue",
                )

        return ack


def dead_letter_placeholder(settings: RabbitMqSettings) -> str:
    """taskiq-aio-pika's ``Queue`` needs a dead-letter name even without dead letters."""
    return f"{settings.queue_name}-unused-dlq"
