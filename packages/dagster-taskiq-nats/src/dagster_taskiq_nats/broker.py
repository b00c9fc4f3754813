"""``NatsJetStreamBroker``: the NATS JetStream transport of dagster-taskiq, on taskiq-nats.

It stays a normal TaskIQ ``AsyncBroker`` and keeps taskiq-nats's constructor, client and
``shutdown``; what every backend does with a received message (deliveries, acks, leases,
heartbeat, dead-letter logging) is core's :class:`~dagster_taskiq.brokers.BrokerBase`. This
module is JetStream's part (why each replaces a taskiq-nats 0.7.0 behaviour:
``docs/design-notes.md``, section "NATS JetStream broker"):

* startup connects, creates the stream (work-queue retention, duplicate window) and the durable
  pull consumer (explicit acks, ack wait = ``visibility_timeout``, ``max_deliver``), and refuses
  existing ones whose configuration disagrees, listing each difference;
* sends carry ``Nats-Msg-Id`` from the step's identity: JetStream drops an identical resend
  within its duplicate window;
* a receive pulls one message; ack is a confirmed ack, a lease an in-progress ack (``+WPI``,
  always the whole ack wait), release a NAK;
* a message delivered ``max_deliveries`` times makes JetStream publish an advisory, which a
  dead-letter stream captures; a dead letter is the original message read by its sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from functools import partial
from typing import TypeVar

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from taskiq import AsyncBroker
from taskiq.message import BrokerMessage
from taskiq_nats import PullBasedJetStreamBroker

from dagster_taskiq.brokers import BrokerBase, Delivery
from dagster_taskiq.messaging import (
    LABEL_QUEUE,
    STEP_LABELS,
    DeadLetter,
    hashed_identity,
    step_labels,
    step_log_fields,
)
from dagster_taskiq_nats import streams
from dagster_taskiq_nats.errors import (
    DagsterTaskIQNatsError,
    DisconnectedError,
    NatsUnavailableError,
    is_transient,
)
from dagster_taskiq_nats.settings import NatsSettings

__all__ = ["NatsJetStreamBroker"]

_T = TypeVar("_T")
_log = structlog.get_logger("dagster_taskiq_nats")
_MSG_ID = "Nats-Msg-Id"


class NatsJetStreamBroker(BrokerBase, PullBasedJetStreamBroker):
    """A TaskIQ broker on one JetStream stream and its durable pull consumer (``NatsSettings``).

    The broker pulls from ``settings.consumer`` and publishes on ``settings.subject``, or on the
    subject a message's ``queue`` label names (a stream must capture it).
    """

    settings: NatsSettings

    event_prefix = "nats"
    service = "NATS"
    target_fields = ("servers", "stream")
    unavailable_error = NatsUnavailableError
    is_transient = staticmethod(is_transient)

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        super().__init__(
            settings.server_list,
            subject=settings.subject,
            stream_name=settings.stream,
            durable=settings.consumer,
            stream_config=streams.stream_config(settings),
            consumer_config=streams.consumer_config(settings),
            pull_consume_batch=1,
            pull_consume_timeout=settings.fetch_timeout,
        )
        self._hold_deliveries(settings.delivery_policy())
        self._dead_subscription: JetStreamContext.PullSubscription | None = None
        self._started = False
        self.server = settings.redacted_servers

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stream={self.settings.stream!r}, servers={self.server!r})"

    # --- lifecycle ---------------------------------------------------------------------------

    async def startup(self) -> None:
        """Connect (with backoff), create or check the stream, consumer and dead letters."""
        settings = self.settings
        await self._call("connect", self._connect)
        self.js = self.client.jetstream(timeout=self.settings.request_timeout)
        configs = [(streams.stream_config(settings), streams.consumer_config(settings))]
        if settings.dead_letter_queue is not None:
            configs.append(streams.dead_letter_configs(settings))
        for stream, consumer in configs:
            name = str(stream.name)
            await self._call(
                "add_stream", partial(streams.ensure_stream, self.js, stream), queue=name
            )
            await self._call(
                "add_consumer",
                partial(streams.ensure_consumer, self.js, name, consumer),
                queue=name,
            )
        self.consumer = await self._call(
            "pull_subscribe",
            lambda: self.js.pull_subscribe_bind(
                consumer=self.settings.consumer, stream=self.settings.stream
            ),
        )
        self._started = True
        _log.info(
            "nats_broker_started",
            stream=self.settings.stream,
            subject=self.settings.subject,
            consumer=self.settings.consumer,
            dead_letter_queue=settings.dead_letter_queue,
            servers=self.server,
            worker=self.is_worker_process,
        )
        await AsyncBroker.startup(self)

    async def _connect(self) -> None:
        """One connection attempt (each server tried at most twice); stamina spaces the
        attempts. nats-py's own loop would sleep ``reconnect_time_wait`` between tries up to
        ``max_reconnect_attempts`` times, or forever when unlimited. Once connected, nats-py
        reconnects a lost connection by itself, without limit."""
        if self.client.is_connected:
            return
        client = Client()
        await client.connect(
            self.settings.server_list,
            allow_reconnect=True,
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            connect_timeout=int(max(1, round(self.settings.connect_timeout))),
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        client.options["max_reconnect_attempts"] = -1
        client.options["reconnect_time_wait"] = self.settings.retry_initial_delay
        self.client = client  # type: ignore[misc]  # taskiq-nats types it Final

    async def _on_error(self, exc: Exception) -> None:
        _log.debug("nats_client_error", servers=self.server, error=f"{type(exc).__name__}: {exc}")

    async def _on_disconnected(self) -> None:
        if self._started:  # not when shutdown closes it
            _log.warning("nats_disconnected", servers=self.server)

    async def _on_reconnected(self) -> None:
        _log.info("nats_reconnected", servers=self.server)

    async def shutdown(self) -> None:
        """Stop heartbeats and close the connection."""
        self.stop_heartbeats()
        self._started = False
        try:
            await self.client.close()
        except asyncio.CancelledError:
            # nats-py cancels its own transport wait when the connection was already lost
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception as exc:
            _log.warning("nats_close_failed", error=f"{type(exc).__name__}: {exc}")
        await AsyncBroker.shutdown(self)

    def _require_started(self) -> None:
        if not self._started:
            raise DagsterTaskIQNatsError(
                f"{self!r} is not started: await broker.startup() before using it"
            )

    # --- sending -----------------------------------------------------------------------------

    async def _queue_depth(self) -> int:
        """The workers' consumer's pending count (messages not yet delivered to it)."""
        stream, consumer = self.settings.stream, self.settings.consumer
        info = await self._call(
            "consumer_info", lambda: self.js.consumer_info(stream, consumer), queue=stream
        )
        return int(info.num_pending or 0)

    async def kick(self, message: BrokerMessage) -> None:
        """Publish and wait for JetStream's acknowledgement; an identical resend within the
        duplicate window (same ``Nats-Msg-Id``) is dropped by the server."""
        self._require_started()
        subject = self.settings.step_queue(message.labels.get(LABEL_QUEUE))
        step = step_labels(message.labels)
        headers = {_MSG_ID: hashed_identity(step, message.task_id), **step}
        ack = await self._call(
            "publish",
            lambda: self.js.publish(subject, payload=message.message, headers=headers),
        )
        fields = {"subject": subject, "task_id": message.task_id, **step_log_fields(step)}
        if ack.duplicate:
            _log.info("nats_duplicate_dropped", stream_seq=ack.seq, **fields)
        else:
            _log.debug("nats_message_sent", stream_seq=ack.seq, **fields)

    # --- receiving ---------------------------------------------------------------------------

    async def _receive(self) -> list[Delivery]:
        """One pull of one message (no batch waits unseen in the client)."""
        self._require_started()
        msg = await self._call("fetch", self._fetch_one)
        if msg is None:
            return []
        headers = msg.headers or {}
        seq = str(msg.metadata.sequence.stream)
        delivery = Delivery(
            broker=self,
            queue=self.settings.stream,
            handle=seq,
            message_id=seq,
            receive_count=msg.metadata.num_delivered,
            step={name: headers[name] for name in STEP_LABELS if name in headers},
            body=msg.data,
            transport=msg,
        )
        return [self._hold(delivery)]

    async def _fetch_one(self) -> Msg | None:
        try:
            messages = await self.consumer.fetch(1, timeout=self.settings.fetch_timeout)
        except NatsTimeoutError:
            if not self.client.is_connected:
                raise DisconnectedError(f"not connected to {self.server}") from None
            return None
        return messages[0] if messages else None

    # --- acknowledgement, ack wait -----------------------------------------------------------

    async def _delete(self, delivery: Delivery) -> None:
        msg: Msg = delivery.transport
        timeout = self.settings.request_timeout
        await self._call(
            "ack", lambda: msg.ack_sync(timeout=timeout), **step_log_fields(delivery.step)
        )

    async def _extend(self, delivery: Delivery, seconds: float) -> float:
        # JetStream's ack wait belongs to the consumer: +WPI restarts it, whatever ``seconds``.
        if not self.client.is_connected:
            raise DisconnectedError(f"not connected to {self.server}: in-progress ack not sent")
        msg: Msg = delivery.transport
        await msg.in_progress()
        return self.settings.visibility_timeout

    async def _give_back(self, delivery: Delivery) -> None:
        msg: Msg = delivery.transport
        await self._call("nak", msg.nak, **step_log_fields(delivery.step))

    # --- dead letters ------------------------------------------------------------------------

    async def receive_dead_letters(self, max_messages: int = 10) -> list[DeadLetter]:
        """Up to ``max_messages`` dead letters: the messages JetStream stopped delivering after
        ``max_deliveries``, read back by the sequence its advisory names (none without a
        dead-letter stream). Each advisory stays with this reader until its ``ack``, which also
        deletes the message from the stream; one left unacked comes back after the visibility
        timeout. An advisory whose message is gone already is acked and skipped."""
        self._require_started()
        dead = self.settings.dead_letter_queue
        if dead is None:
            return []
        consumer = self.settings.dead_letter_consumer
        info = await self._call("consumer_info", lambda: self.js.consumer_info(dead, consumer))
        if not info.num_pending and not info.num_ack_pending:
            return []
        if self._dead_subscription is None:
            self._dead_subscription = await self._call(
                "pull_subscribe",
                lambda: self.js.pull_subscribe_bind(consumer=consumer, stream=dead),
                queue=dead,
            )
        subscription = self._dead_subscription
        try:
            advisories = await subscription.fetch(max(1, max_messages), timeout=0.5)
        except NatsTimeoutError:
            return []
        letters = []
        for advisory in advisories:
            letter = await self._read_dead_letter(advisory)
            if letter is not None:
                letters.append(letter)
        return letters

    async def _read_dead_letter(self, advisory: Msg) -> DeadLetter | None:
        try:
            event = json.loads(advisory.data)
            seq = int(event["stream_seq"])
        except (ValueError, KeyError, TypeError):
            _log.error("nats_dead_letter_unreadable", data=advisory.data[:200])
            await advisory.ack()
            return None
        stream = self.settings.stream
        try:
            original = await self._call("get_msg", lambda: self.js.get_msg(stream, seq))
        except NotFoundError:
            _log.info("nats_dead_letter_message_gone", stream=stream, stream_seq=seq)
            await advisory.ack_sync(timeout=self.settings.request_timeout)
            return None
        headers = original.headers or {}
        deliveries = event.get("deliveries")

        async def delete() -> None:
            with contextlib.suppress(NotFoundError):
                await self._call("delete_msg", lambda: self.js.delete_msg(stream, seq))
            timeout = self.settings.request_timeout
            await self._call(
                "ack",
                lambda: advisory.ack_sync(timeout=timeout),
                queue=self.settings.dead_letter_queue,
            )

        return self._dead_letter(
            body=original.data or b"",
            message_id=str(seq),
            receive_count=int(deliveries) if deliveries is not None else None,
            step={name: headers[name] for name in STEP_LABELS if name in headers},
            delete=delete,
        )
