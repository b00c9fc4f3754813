"""``LocalStackSqsBroker``: taskiq-aio-sqs's ``SQSBroker`` made safe for dagster-taskiq steps.

It stays a normal TaskIQ ``AsyncBroker`` (``taskiq worker module:broker`` runs it) and keeps
taskiq-aio-sqs's configuration, queue registry and ``shutdown``; it replaces the parts whose
2.1.1 behaviour loses, duplicates or serialises steps (see ``docs/design-notes.md``):

* startup resolves, or creates when allowed, the queue and its dead-letter queue, checks their
  attributes, and rides out an endpoint that is not up yet (stamina backoff within the budget);
* sends carry a ``MessageGroupId`` from the group strategy and a ``MessageDeduplicationId`` from
  the step's idempotency key, retry number and enqueue attempt; a FIFO delay or an oversized
  body is refused before sending;
* ``listen()`` receives only when asked for the next message (no 100-message prefetch), with
  one long poll per receive, and retries a lost endpoint without dropping what it received;
* a received message is deleted only by its ``ack`` (after the task and its result), its
  visibility is extended by a heartbeat until then, and :meth:`message_control` /
  :meth:`receive_dead_letters` implement the core's optional messaging protocols.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import structlog
from taskiq import AsyncBroker
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage
from taskiq_aio_sqs import SQSBroker, SQSMessageMetadata, SQSQueue

from dagster_taskiq import messaging
from dagster_taskiq.messaging import (
    LABEL_ENQUEUE_ATTEMPT,
    LABEL_IDEMPOTENCY_KEY,
    LABEL_QUEUE,
    LABEL_RETRY_NUMBER,
    DeadLetter,
)
from dagster_taskiq_sqs.client import ClientFactory, aiobotocore_client_factory
from dagster_taskiq_sqs.delivery import (
    Delivery,
    SqsMessageControl,
    step_labels_of,
)
from dagster_taskiq_sqs.errors import (
    AckError,
    DagsterTaskIQSqsError,
    FifoDelayError,
    MessageTooLargeError,
)
from dagster_taskiq_sqs.message_ids import (
    StepLabels,
    message_deduplication_id,
    message_group_id,
)
from dagster_taskiq_sqs.queues import QueueInfo, ensure_queue
from dagster_taskiq_sqs.retrying import SqsCaller, error_code
from dagster_taskiq_sqs.settings import SqsSettings, queue_name_of

if TYPE_CHECKING:
    from dagster_taskiq.messaging import MessageControl

__all__ = ["LocalStackSqsBroker"]

_log = structlog.get_logger("dagster_taskiq_sqs")
_STALE_HANDLE_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"}
)
_RECEIVE_ATTRIBUTES = ["ApproximateReceiveCount"]


class LocalStackSqsBroker(SQSBroker):
    """A TaskIQ broker on one SQS queue (AWS, LocalStack, moto or the in-memory stub).

    ``settings`` says where the queue is and how to use it; ``client_factory`` (a zero-argument
    callable returning an async context manager that yields an aiobotocore-shaped SQS client)
    replaces aiobotocore, e.g. ``InMemorySqs().async_client`` in tests.

    The broker listens on ``settings.queue_name`` and sends there, or to the queue a message's
    ``queue`` label names (resolved, and created when allowed, on first use).
    """

    def __init__(
        self, settings: SqsSettings, *, client_factory: ClientFactory | None = None
    ) -> None:
        super().__init__(
            settings.queue,
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            use_task_id_for_deduplication=False,
            wait_time_seconds=settings.wait_time_seconds,
            max_number_of_messages=settings.max_messages,
            visibility_timeout=settings.taskiq_visibility_timeout,
            enable_heartbeat=False,  # ours (below) retries, logs and can be taken over
        )
        self.settings = settings
        self._client_factory: ClientFactory = client_factory or aiobotocore_client_factory(settings)
        self._client_context: AbstractAsyncContextManager[Any] | None = None
        self._caller: SqsCaller | None = None
        self._queue_info: dict[str, QueueInfo] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._resolving = asyncio.Lock()
        self._startable: Callable[[], int] | None = None
        self.endpoint = settings.endpoint_url or f"https://sqs.{settings.region}.amazonaws.com"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(queue={self.settings.queue!r}, endpoint={self.endpoint!r})"

    # --- configuration the base class offers but one queue per listener cannot honour -----

    def with_queues(self, *queues: SQSQueue) -> SQSBroker:
        raise DagsterTaskIQSqsError(
            "LocalStackSqsBroker listens on settings.queue_name only; run one worker per queue "
            "and send to other queues with the 'queue' label"
        )

    def with_default_queue(self, queue: SQSQueue) -> SQSBroker:
        raise DagsterTaskIQSqsError(
            "LocalStackSqsBroker's queue is settings.queue_name; create another broker instead"
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the client, resolve (or create) the queue and its DLQ, check their attributes."""
        self._startup_called = True
        if self._client_context is None:
            context = self._client_factory()
            self._sqs_client = await context.__aenter__()
            self._client_context = context
            self._caller = SqsCaller(
                self._sqs_client, budget=self.settings.retry_budget, endpoint=self.endpoint
            )
        try:
            info = await ensure_queue(self._require_caller(), self.settings)
        except BaseException:
            await self._close_client()
            raise
        self._register(info)
        _log.info(
            "sqs_broker_started",
            queue=info.name,
            queue_url=info.url,
            endpoint=self.endpoint,
            fifo=info.is_fifo,
            dead_letter_queue=info.dead_letter.name if info.dead_letter else None,
            max_message_size=info.max_message_size,
            worker=self.is_worker_process,
        )
        await AsyncBroker.startup(self)

    async def _close_client(self) -> None:
        """Close the client this broker opened (the base class also expects an S3 client)."""
        context, self._client_context = self._client_context, None
        self._caller = None
        for delivery in self._deliveries.values():
            self.stop_heartbeat(delivery)
        self._deliveries.clear()
        if context is not None:
            await context.__aexit__(None, None, None)

    def _register(self, info: QueueInfo) -> None:
        self._queue_info[info.name] = info
        self._queue_urls[info.name] = info.url
        if info.name == self.settings.queue:
            self._sqs_queue_url = info.url
        if info.name not in self._queues:
            self._queues[info.name] = SQSQueue(
                name=info.name,
                is_fifo=info.is_fifo,
                max_number_of_messages=self.settings.max_messages,
                wait_time_seconds=self.settings.wait_time_seconds,
                visibility_timeout=self.settings.taskiq_visibility_timeout,
            )

    def _require_caller(self) -> SqsCaller:
        if self._caller is None:
            raise DagsterTaskIQSqsError(
                f"{self!r} is not started: await broker.startup() before using it"
            )
        return self._caller

    @property
    def queue_info(self) -> QueueInfo:
        """The listened-to queue, as resolved at startup."""
        self._require_caller()
        return self._queue_info[self.settings.queue]

    # --- sending -----------------------------------------------------------------------------

    async def kick(self, message: BrokerMessage) -> None:
        """Send one message; refuse a FIFO delay or a body over the queue's size limit."""
        outgoing = await self._outgoing(message)
        response = await self._require_caller()(
            "send_message",
            outgoing.queue.name,
            log_fields=outgoing.step.log_fields(),
            **outgoing.params,
        )
        outgoing.log_sent(response.get("MessageId"))

    async def kick_batch(self, messages: Sequence[BrokerMessage]) -> None:
        """Send several messages with ``SendMessageBatch``: up to 10 a request and within the
        queue's size limit for the whole request, per target queue. Each message is checked
        as :meth:`kick` checks it, before anything is sent. An entry the batch could not send
        for a reason of the service's is sent again on its own (with :meth:`kick`'s retries;
        its deduplication id keeps it single); one refused for a fault of the sender raises."""
        by_queue: dict[str, list[_Outgoing]] = {}
        for message in messages:
            outgoing = await self._outgoing(message)
            by_queue.setdefault(outgoing.queue.name, []).append(outgoing)
        for batch in (b for group in by_queue.values() for b in _batches(group)):
            if len(batch) == 1:
                await self.kick(batch[0].message)
            else:
                await self._send_batch(batch)

    async def _outgoing(self, message: BrokerMessage) -> _Outgoing:
        info = await self._target_queue(message)
        params: dict[str, Any] = dict(
            await self.build_kick_kwargs(message, self._queues[info.name], info.url)
        )
        size = _message_size(params)
        if size > info.max_message_size:
            raise MessageTooLargeError(
                queue=info.name, size=size, limit=info.max_message_size, task_name=message.task_name
            )
        return _Outgoing(message, info, params, size, StepLabels(message.labels))

    async def _send_batch(self, batch: list[_Outgoing]) -> None:
        queue = batch[0].queue
        entries = [
            {"Id": str(n), **{k: v for k, v in o.params.items() if k != "QueueUrl"}}
            for n, o in enumerate(batch)
        ]
        response = await self._require_caller()(
            "send_message_batch", queue.name, QueueUrl=queue.url, Entries=entries
        )
        for entry in response.get("Successful") or []:
            batch[int(entry["Id"])].log_sent(entry.get("MessageId"))
        for entry in response.get("Failed") or []:
            outgoing = batch[int(entry["Id"])]
            reason = f"{entry.get('Code')}: {entry.get('Message')}"
            if entry.get("SenderFault"):
                raise DagsterTaskIQSqsError(
                    f"SQS refused message {outgoing.message.task_id} of queue {queue.name!r} in "
                    f"a batch send: {reason}"
                )
            _log.warning(
                "sqs_batch_entry_failed",
                queue=queue.name,
                reason=reason,
                **outgoing.step.log_fields(),
            )
            await self.kick(outgoing.message)

    async def build_kick_kwargs(
        self,
        message: BrokerMessage,
        queue: SQSQueue | None = None,
        queue_url: str | None = None,
    ) -> Any:
        """``SendMessage`` parameters: body, group and deduplication ids, step attributes."""
        resolved = queue or self._default_queue
        url = queue_url or await self._get_queue_url(queue_name=resolved.name)
        kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": message.message.decode("utf-8")}
        step = StepLabels(message.labels)
        if resolved.is_fifo:
            delay = message.labels.get("delay")
            if delay not in (None, 0, "0", "", 0.0):
                raise FifoDelayError(
                    f"task {message.task_name!r} asks for a {delay} s delay, but queue "
                    f"{resolved.name!r} is FIFO and SQS does not support per-message delays "
                    f"on FIFO queues; drop the 'delay' label or use a standard queue"
                )
            kwargs["MessageGroupId"] = message_group_id(
                self.settings.group_strategy, step, message.labels, message.task_id
            )
            kwargs["MessageDeduplicationId"] = message_deduplication_id(step, message.task_id)
        else:
            delay_seconds = self._resolve_delay_seconds(message, resolved)
            if delay_seconds is not None:
                kwargs["DelaySeconds"] = delay_seconds
        attributes = _step_attributes(step)
        if attributes:
            kwargs["MessageAttributes"] = attributes
        return kwargs

    async def _target_queue(self, message: BrokerMessage) -> QueueInfo:
        caller = self._require_caller()
        name = queue_name_of(str(message.labels.get(LABEL_QUEUE) or self.settings.queue))
        info = self._queue_info.get(name)
        if info is not None:
            return info
        async with self._resolving:
            info = self._queue_info.get(name)
            if info is None:
                info = await ensure_queue(caller, self.settings, name)
                self._register(info)
        return info

    # --- receiving ---------------------------------------------------------------------------

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """Yield received messages; receive again only when the consumer asks for more.

        With ``receive_ahead``, the next receive starts as soon as a batch arrives, while the
        consumer takes that batch (at most two batches held). A lost endpoint is retried within
        the budget (then ``SqsUnavailableError``); what was received stays invisible (heartbeat)
        until it is yielded, and anything unyielded when the consumer closes the generator is
        released at once for other consumers.
        """
        info = self.queue_info
        held: collections.deque[tuple[Delivery, bytes]] = collections.deque()
        ahead: asyncio.Task[list[tuple[Delivery, bytes]]] | None = None
        try:
            while True:
                if not held:
                    if ahead is not None:
                        batch, ahead = await ahead, None
                    else:
                        batch = await self._receive(info)
                    held.extend(batch)
                    if held and self.settings.receive_ahead:
                        ahead = asyncio.create_task(self._receive(info))
                    continue
                delivery, body = held.popleft()
                if self._is_stale(delivery):
                    continue
                yield AckableMessage(data=body, ack=self._ack_function(delivery))
        finally:
            if ahead is not None:
                held.extend(await _cancelled_receive(ahead))
            if held:
                with contextlib.suppress(Exception):
                    await self._release_unyielded([delivery for delivery, _ in held])

    async def _receive(self, info: QueueInfo) -> list[tuple[Delivery, bytes]]:
        response = await self._require_caller()(
            "receive_message",
            info.name,
            QueueUrl=info.url,
            MaxNumberOfMessages=self._receive_count(),
            WaitTimeSeconds=self.settings.wait_time_seconds,
            VisibilityTimeout=self.settings.taskiq_visibility_timeout,
            AttributeNames=_RECEIVE_ATTRIBUTES,
            MessageAttributeNames=["All"],
        )
        received = []
        for raw in response.get("Messages") or []:
            body, handle = raw.get("Body"), raw.get("ReceiptHandle")
            if not isinstance(body, str) or not isinstance(handle, str):
                continue
            delivery = Delivery(
                queue=info.name,
                queue_url=info.url,
                receipt_handle=handle,
                message_id=raw.get("MessageId"),
                receive_count=_receive_count(raw),
                step=step_labels_of(raw.get("MessageAttributes")),
            )
            self._deliveries[handle] = delivery
            if self.settings.heartbeat_enabled:
                delivery.heartbeat = self._start_delivery_heartbeat(delivery)
            _log.debug("sqs_message_received", **delivery.log_fields())
            if (
                info.dead_letter is not None
                and (delivery.receive_count or 0) >= self.settings.max_receive_count
            ):
                _log.warning(
                    "sqs_last_delivery_before_dead_letter_queue",
                    dead_letter_queue=info.dead_letter.name,
                    max_receive_count=self.settings.max_receive_count,
                    **delivery.log_fields(),
                )
            received.append((delivery, body.encode("utf-8")))
        return received

    def limit_receives(self, startable: Callable[[], int]) -> None:
        """A receive asks for at most ``startable()`` messages (``SupportsReceiveLimit``)."""
        self._startable = startable

    def _receive_count(self) -> int:
        wanted = self.settings.max_messages
        if self._startable is not None:
            wanted = min(wanted, max(1, self._startable()))
        return wanted

    def _is_stale(self, delivery: Delivery) -> bool:
        """Held (unyielded) past its visibility without a heartbeat: it is someone else's now."""
        if delivery.heartbeat is not None:
            return False
        timeout = self.settings.taskiq_visibility_timeout
        margin = min(5.0, timeout / 10)  # leave the consumer time to claim and extend it
        held_for = time.monotonic() - delivery.received_at
        if held_for < timeout - margin:
            return False
        self._deliveries.pop(delivery.receipt_handle, None)
        _log.warning(
            "sqs_stale_delivery_skipped", held_for=round(held_for, 3), **delivery.log_fields()
        )
        return True

    async def _release_unyielded(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self.stop_heartbeat(delivery)
            self._deliveries.pop(delivery.receipt_handle, None)
            if self._caller is not None:
                await self.change_visibility(delivery, 0, event="sqs_message_released")
                delivery.settled = "released"

    # --- acknowledgement, visibility -------------------------------------------------------

    def _ack_function(self, delivery: Delivery) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            await self._ack(delivery)

        # Where taskiq-aio-sqs's own acks keep it (and message_control looks it up).
        ack.metadata = SQSMessageMetadata(  # type: ignore[attr-defined]
            receipt_handle=delivery.receipt_handle,
            queue_url=delivery.queue_url,
            message_id=delivery.message_id,
            approximate_receive_count=delivery.receive_count,
        )
        return ack

    async def _ack(self, delivery: Delivery) -> None:
        if delivery.settled == "acked":
            return
        if delivery.settled == "released":
            raise AckError(
                f"message {delivery.message_id} of queue {delivery.queue!r} was released; "
                f"acking it now could delete another consumer's delivery"
            )
        self.stop_heartbeat(delivery)
        try:
            await self._require_caller()(
                "delete_message",
                delivery.queue,
                log_fields=delivery.step.log_fields(),
                QueueUrl=delivery.queue_url,
                ReceiptHandle=delivery.receipt_handle,
            )
        except Exception as exc:
            if error_code(exc) in _STALE_HANDLE_CODES:
                raise AckError(
                    f"message {delivery.message_id} of queue {delivery.queue!r} could not be "
                    f"deleted: its receipt handle is no longer valid; it was probably received "
                    f"again after its visibility timeout ({exc})"
                ) from exc
            raise
        delivery.settled = "acked"
        self._deliveries.pop(delivery.receipt_handle, None)
        _log.debug("sqs_message_acked", **delivery.log_fields())

    def message_control(self, message: AckableMessage) -> MessageControl | None:
        """Extend / release a message this broker's ``listen()`` yielded (else None)."""
        metadata = getattr(message.ack, "metadata", None)
        if not isinstance(metadata, SQSMessageMetadata):
            return None
        delivery = self._deliveries.get(metadata.receipt_handle)
        if delivery is None:
            return None
        return SqsMessageControl(self, delivery)

    def stop_heartbeat(self, delivery: Delivery) -> None:
        """Stop the broker's own heartbeat of ``delivery`` (idempotent)."""
        messaging.stop_heartbeat(delivery)

    async def change_visibility(self, delivery: Delivery, seconds: int, *, event: str) -> None:
        """``ChangeMessageVisibility`` of ``delivery`` to ``seconds`` from now; logs ``event``."""
        if delivery.settled is not None:
            raise AckError(
                f"message {delivery.message_id} of queue {delivery.queue!r} is already "
                f"{delivery.settled}"
            )
        try:
            await self._require_caller()(
                "change_message_visibility",
                delivery.queue,
                log_fields=delivery.step.log_fields(),
                QueueUrl=delivery.queue_url,
                ReceiptHandle=delivery.receipt_handle,
                VisibilityTimeout=seconds,
            )
        except Exception as exc:
            if error_code(exc) in _STALE_HANDLE_CODES:
                raise AckError(
                    f"visibility of message {delivery.message_id} of queue {delivery.queue!r} "
                    f"could not be changed (no longer in flight under this receipt handle?): "
                    f"{exc}"
                ) from exc
            raise
        if seconds == 0:
            self._deliveries.pop(delivery.receipt_handle, None)
        _log.debug(event, visibility_timeout=seconds, **delivery.log_fields())

    def _start_delivery_heartbeat(self, delivery: Delivery) -> asyncio.Task[None]:
        # the tasks are cancelled by SQSBroker.shutdown
        return messaging.start_heartbeat(self._heartbeat_tasks, self._heartbeat(delivery))

    async def _heartbeat(self, delivery: Delivery) -> None:
        timeout = self.settings.taskiq_visibility_timeout
        await messaging.heartbeat_loop(
            self.settings.heartbeat_every,
            lambda: self.change_visibility(delivery, timeout, event="sqs_visibility_extended"),
            stop_on=AckError,
            logger=_log,
            event_prefix="sqs",
            log_fields=delivery.log_fields,
        )

    # --- dead letters ------------------------------------------------------------------------

    async def receive_dead_letters(self, max_messages: int = 10) -> list[DeadLetter]:
        """Up to ``max_messages`` messages from the dead-letter queue (none without one).

        Each stays in the dead-letter queue, invisible for the visibility timeout, until its
        ``ack`` deletes it. ``receive_count`` is SQS's count less this receive: the times the
        message was received from the source queue (``max_receive_count``) on a first look.
        """
        info = self.queue_info
        dead = info.dead_letter
        if dead is None:
            return []
        caller = self._require_caller()
        response = await caller(
            "receive_message",
            dead.name,
            QueueUrl=dead.url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=0,
            AttributeNames=_RECEIVE_ATTRIBUTES,
            MessageAttributeNames=["All"],
        )
        letters = []
        for raw in response.get("Messages") or []:
            body, handle = raw.get("Body"), raw.get("ReceiptHandle")
            if not isinstance(body, str) or not isinstance(handle, str):
                continue
            count = _receive_count(raw)
            step = step_labels_of(raw.get("MessageAttributes"))
            fields = {
                "queue": info.name,
                "dead_letter_queue": dead.name,
                "message_id": raw.get("MessageId"),
                "receive_count": count - 1 if count else None,
                **step.log_fields(),
            }
            _log.warning("sqs_dead_letter_received", **fields)
            letters.append(
                DeadLetter(
                    body=body.encode("utf-8"),
                    receive_count=fields["receive_count"],
                    message_id=raw.get("MessageId"),
                    ack=self._dead_letter_ack(dead, handle, fields),
                )
            )
        return letters

    def _dead_letter_ack(
        self, dead: QueueInfo, handle: str, fields: dict[str, Any]
    ) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            await self._require_caller()(
                "delete_message", dead.name, QueueUrl=dead.url, ReceiptHandle=handle
            )
            _log.info("sqs_dead_letter_acked", **fields)

        return ack


async def _cancelled_receive(
    task: asyncio.Task[list[tuple[Delivery, bytes]]],
) -> list[tuple[Delivery, bytes]]:
    """Stop a receive made ahead; what it already got (if anything) is returned for release."""
    task.cancel()
    try:
        return await task
    except (asyncio.CancelledError, Exception):
        return []


def _receive_count(raw: dict[str, Any]) -> int | None:
    value = (raw.get("Attributes") or {}).get("ApproximateReceiveCount")
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _step_attributes(step: StepLabels) -> dict[str, dict[str, str]]:
    """The step labels as message attributes, readable on receive without decoding the body."""
    if step.key is None:
        return {}
    attributes = {LABEL_IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": step.key}}
    for name, value in (
        (LABEL_RETRY_NUMBER, step.retry_number),
        (LABEL_ENQUEUE_ATTEMPT, step.enqueue_attempt),
    ):
        if value is not None:
            attributes[name] = {"DataType": "Number", "StringValue": str(value)}
    return attributes


@dataclasses.dataclass(frozen=True)
class _Outgoing:
    """One message ready to send: its queue, ``SendMessage`` parameters and size."""

    message: BrokerMessage
    queue: QueueInfo
    params: dict[str, Any]
    size: int
    step: StepLabels

    def log_sent(self, message_id: str | None) -> None:
        _log.debug(
            "sqs_message_sent",
            queue=self.queue.name,
            message_id=message_id,
            task_id=self.message.task_id,
            group_id=self.params.get("MessageGroupId"),
            size=self.size,
            **self.step.log_fields(),
        )


BATCH_ENTRIES = 10
"""The most entries of one SQS batch request."""


def _batches(outgoing: list[_Outgoing]) -> list[list[_Outgoing]]:
    """``outgoing`` (one queue's) cut into batches of at most ``BATCH_ENTRIES`` entries and at
    most the queue's message size limit in all (SQS's limit for a batch's total payload)."""
    batches: list[list[_Outgoing]] = []
    current: list[_Outgoing] = []
    total = 0
    for item in outgoing:
        if current and (
            len(current) == BATCH_ENTRIES or total + item.size > item.queue.max_message_size
        ):
            batches.append(current)
            current, total = [], 0
        current.append(item)
        total += item.size
    if current:
        batches.append(current)
    return batches


def _message_size(kwargs: dict[str, Any]) -> int:
    """Bytes SQS counts against ``MaximumMessageSize``: the body and every message attribute."""
    size = len(kwargs["MessageBody"].encode("utf-8"))
    for name, attribute in (kwargs.get("MessageAttributes") or {}).items():
        size += len(name.encode("utf-8")) + len(attribute["DataType"].encode("utf-8"))
        size += len(attribute.get("StringValue", "").encode("utf-8"))
    return size
