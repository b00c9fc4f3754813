"""``SqsAsyncBroker``: the SQS transport of dagster-taskiq, on taskiq-aio-sqs's ``SQSBroker``.

It stays a normal TaskIQ ``AsyncBroker`` (``taskiq worker module:broker`` runs it) and keeps
taskiq-aio-sqs's configuration, queue registry and ``shutdown``; what every backend does with a
received message (deliveries, acks, leases, heartbeat, dead-letter logging) is core's
:class:`~dagster_taskiq.brokers.BrokerBase`. This module is SQS's part (why each replaces a
taskiq-aio-sqs 2.1.1 behaviour: ``docs/design-notes.md``):

* startup resolves, or creates when allowed, the queue and its dead-letter queue and checks
  their attributes, riding out an endpoint that is not up yet;
* sends carry a ``MessageGroupId`` from the group strategy and a ``MessageDeduplicationId`` from
  the step's idempotency key, retry number and enqueue attempt; a FIFO delay or an oversized
  body is refused before sending; steps ready together go in ``SendMessageBatch`` requests;
* a receive is one long poll for at most as many messages as the worker can start;
* ack is ``DeleteMessage``, a lease is ``ChangeMessageVisibility``, release sets it to 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from taskiq import AsyncBroker
from taskiq.message import BrokerMessage
from taskiq_aio_sqs import SQSBroker, SQSQueue

from dagster_taskiq.brokers import BrokerBase, Delivery
from dagster_taskiq.errors import AckError
from dagster_taskiq.messaging import LABEL_QUEUE, DeadLetter, step_log_fields
from dagster_taskiq_sqs.client import ClientFactory, SqsCaller, aiobotocore_client_factory
from dagster_taskiq_sqs.errors import (
    DagsterTaskIQSqsError,
    MessageTooLargeError,
    SqsUnavailableError,
    error_code,
    is_transient,
)
from dagster_taskiq_sqs.message_ids import StepLabels
from dagster_taskiq_sqs.messages import (
    Outgoing,
    batches,
    fifo_params,
    message_size,
    receive_count,
    step_attributes,
    step_labels_of,
    visibility_seconds,
)
from dagster_taskiq_sqs.queues import QueueInfo, ensure_queue
from dagster_taskiq_sqs.settings import SqsSettings

__all__ = ["LocalStackSqsBroker", "SqsAsyncBroker"]

_log = structlog.get_logger("dagster_taskiq_sqs")
_STALE_HANDLE_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"}
)
_RECEIVE_ATTRIBUTES = ["ApproximateReceiveCount"]


class SqsAsyncBroker(BrokerBase, SQSBroker):
    """A TaskIQ broker on one SQS queue (AWS, LocalStack, moto or the in-memory stub).

    ``settings`` says where the queue is and how to use it; ``client_factory`` (a zero-argument
    callable returning an async context manager that yields an aiobotocore-shaped SQS client)
    replaces aiobotocore, e.g. ``InMemorySqs().async_client`` in tests.

    The broker listens on ``settings.queue_name`` and sends there, or to the queue a message's
    ``queue`` label names (resolved, and created when allowed, on first use).
    """

    settings: SqsSettings

    event_prefix = "sqs"
    service = "SQS"
    target_fields = ("endpoint", "queue")
    unavailable_error = SqsUnavailableError
    is_transient = staticmethod(is_transient)

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
            visibility_timeout=settings.visibility_timeout,
            enable_heartbeat=False,  # ours (below) retries, logs and can be taken over
        )
        self.settings = settings
        self._client_factory: ClientFactory = client_factory or aiobotocore_client_factory(settings)
        self._client_context: AbstractAsyncContextManager[Any] | None = None
        self._caller: SqsCaller | None = None
        self._queue_info: dict[str, QueueInfo] = {}
        self._hold_deliveries(
            dataclasses.replace(settings.delivery_policy(), receive_ahead=settings.receive_ahead)
        )
        self._heartbeats = self._heartbeat_tasks  # SQSBroker.shutdown cancels these
        self._resolving = asyncio.Lock()
        self._startable: Callable[[], int] | None = None
        self.server = self.endpoint = (
            settings.endpoint_url or f"https://sqs.{settings.region}.amazonaws.com"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(queue={self.settings.queue!r}, endpoint={self.endpoint!r})"

    # --- configuration the base class offers but one queue per listener cannot honour -----

    def with_queues(self, *queues: SQSQueue) -> SQSBroker:
        raise DagsterTaskIQSqsError(
            "SqsAsyncBroker listens on settings.queue_name only; run one worker per queue "
            "and send to other queues with the 'queue' label"
        )

    def with_default_queue(self, queue: SQSQueue) -> SQSBroker:
        raise DagsterTaskIQSqsError(
            "SqsAsyncBroker's queue is settings.queue_name; create another broker instead"
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the client, resolve (or create) the queue and its DLQ, check their attributes."""
        self._startup_called = True
        if self._client_context is None:
            context = self._client_factory()
            self._sqs_client = await context.__aenter__()
            self._client_context = context
            self._caller = SqsCaller(self._sqs_client, self._retrying, self.endpoint)
        try:
            info = await ensure_queue(self._require_caller(), self.settings)
        except BaseException:
            await self._close_client()
            raise
        self._register(info)
        dead_letter = info.dead_letter.name if info.dead_letter else None
        self.policy = dataclasses.replace(self.policy, dead_letter_queue=dead_letter)
        _log.info(
            "sqs_broker_started",
            queue=info.name,
            queue_url=info.url,
            endpoint=self.endpoint,
            fifo=info.is_fifo,
            dead_letter_queue=dead_letter,
            max_message_size=info.max_message_size,
            worker=self.is_worker_process,
        )
        await AsyncBroker.startup(self)

    async def _close_client(self) -> None:
        """Close the client this broker opened (the base class also expects an S3 client)."""
        context, self._client_context = self._client_context, None
        self._caller = None
        self.stop_heartbeats()
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
                visibility_timeout=self.settings.visibility_timeout,
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

    async def _queue_depth(self) -> int:
        info = self.queue_info
        response = await self._require_caller()(
            "get_queue_attributes",
            info.name,
            QueueUrl=info.url,
            AttributeNames=["ApproximateNumberOfMessages"],
        )
        return int(response.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))

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
        by_queue: dict[str, list[Outgoing]] = {}
        for message in messages:
            outgoing = await self._outgoing(message)
            by_queue.setdefault(outgoing.queue.name, []).append(outgoing)
        for batch in (b for group in by_queue.values() for b in batches(group)):
            if len(batch) == 1:
                await self.kick(batch[0].message)
            else:
                await self._send_batch(batch)

    async def _outgoing(self, message: BrokerMessage) -> Outgoing:
        info = await self._target_queue(message)
        params: dict[str, Any] = dict(
            await self.build_kick_kwargs(message, self._queues[info.name], info.url)
        )
        size = message_size(params)
        if size > info.max_message_size:
            raise MessageTooLargeError(
                queue=info.name, size=size, limit=info.max_message_size, task_name=message.task_name
            )
        return Outgoing(message, info, params, size, StepLabels(message.labels))

    async def _send_batch(self, batch: list[Outgoing]) -> None:
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
            kwargs.update(fifo_params(message, resolved.name, self.settings.group_strategy))
        else:
            delay_seconds = self._resolve_delay_seconds(message, resolved)
            if delay_seconds is not None:
                kwargs["DelaySeconds"] = delay_seconds
        attributes = step_attributes(step)
        if attributes:
            kwargs["MessageAttributes"] = attributes
        return kwargs

    async def _target_queue(self, message: BrokerMessage) -> QueueInfo:
        caller = self._require_caller()
        name = self.settings.step_queue(message.labels.get(LABEL_QUEUE))
        info = self._queue_info.get(name)
        if info is not None:
            return info
        async with self._resolving:
            info = self._queue_info.get(name)
            if info is None:
                info = await ensure_queue(caller, self.settings, name)
                self._register(info)
        return info

    # --- receiving --------------------------------------------------------------------------

    async def _receive(self) -> list[Delivery]:
        info = self.queue_info
        response = await self._require_caller()(
            "receive_message",
            info.name,
            QueueUrl=info.url,
            MaxNumberOfMessages=self._receive_count(),
            WaitTimeSeconds=self.settings.wait_time_seconds,
            VisibilityTimeout=self.settings.visibility_timeout,
            AttributeNames=_RECEIVE_ATTRIBUTES,
            MessageAttributeNames=["All"],
        )
        received = []
        for raw in response.get("Messages") or []:
            body, handle = raw.get("Body"), raw.get("ReceiptHandle")
            if isinstance(body, str) and isinstance(handle, str):
                delivery = Delivery(
                    broker=self,
                    queue=info.name,
                    handle=handle,
                    message_id=raw.get("MessageId"),
                    receive_count=receive_count(raw),
                    step=step_labels_of(raw.get("MessageAttributes")),
                    body=body.encode("utf-8"),
                    transport=info.url,
                )
                received.append(self._hold(delivery))
        return received

    def limit_receives(self, startable: Callable[[], int]) -> None:
        """A receive asks for at most ``startable()`` messages (``SupportsReceiveLimit``)."""
        self._startable = startable

    def _receive_count(self) -> int:
        wanted = self.settings.max_messages
        if self._startable is not None:
            wanted = min(wanted, max(1, self._startable()))
        return wanted

    # --- acknowledgement, visibility -------------------------------------------------------

    async def _delete(self, delivery: Delivery) -> None:
        await self._settle("delete_message", delivery, "could not be deleted")

    async def _extend(self, delivery: Delivery, seconds: float) -> float:
        granted = visibility_seconds(seconds)
        await self._settle(
            "change_message_visibility",
            delivery,
            "could not have its visibility changed",
            VisibilityTimeout=granted,
        )
        return granted

    async def _give_back(self, delivery: Delivery) -> None:
        await self._settle(
            "change_message_visibility", delivery, "could not be released", VisibilityTimeout=0
        )

    async def _settle(self, operation: str, delivery: Delivery, failed: str, **params: Any) -> None:
        """``operation`` on ``delivery``'s receipt handle; a stale handle is an ``AckError``."""
        try:
            await self._require_caller()(
                operation,
                delivery.queue,
                log_fields=step_log_fields(delivery.step),
                QueueUrl=delivery.transport,
                ReceiptHandle=delivery.handle,
                **params,
            )
        except Exception as exc:
            if error_code(exc) in _STALE_HANDLE_CODES:
                raise AckError(
                    f"{delivery.describe()} {failed}: its receipt handle is no longer valid; it "
                    f"was probably received again after its visibility timeout ({exc})"
                ) from exc
            raise

    # --- dead letters ------------------------------------------------------------------------

    async def receive_dead_letters(self, max_messages: int = 10) -> list[DeadLetter]:
        """Up to ``max_messages`` messages from the dead-letter queue (none without one).

        Each stays in the dead-letter queue, invisible for the visibility timeout, until its
        ``ack`` deletes it. ``receive_count`` is SQS's count less this receive: the times the
        message was received from the source queue (``max_deliveries``) on a first look.
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
            if isinstance(body, str) and isinstance(handle, str):
                count = receive_count(raw)
                letters.append(
                    self._dead_letter(
                        body=body.encode("utf-8"),
                        message_id=raw.get("MessageId"),
                        receive_count=count - 1 if count else None,
                        step=step_labels_of(raw.get("MessageAttributes")),
                        delete=self._dead_letter_delete(dead, handle),
                    )
                )
        return letters

    def _dead_letter_delete(self, dead: QueueInfo, handle: str) -> Callable[[], Awaitable[Any]]:
        caller = self._require_caller()
        return lambda: caller("delete_message", dead.name, QueueUrl=dead.url, ReceiptHandle=handle)


LocalStackSqsBroker = SqsAsyncBroker
"""The brief's name for :class:`SqsAsyncBroker` (it serves AWS, LocalStack, moto and the stub)."""
