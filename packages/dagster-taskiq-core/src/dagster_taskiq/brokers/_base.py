"""``BrokerBase``: what every dagster-taskiq broker backend does with a received message.

A backend subclasses ``BrokerBase`` and its TaskIQ library's broker
(``class SqsAsyncBroker(BrokerBase, SQSBroker)``) and writes only its transport: how to send,
how to receive (:meth:`BrokerBase._receive`), and the three acts on a held message
(:meth:`~BrokerBase._delete`, :meth:`~BrokerBase._extend`, :meth:`~BrokerBase._give_back`). This
class holds the rest, once: the deliveries held and their :class:`DeliveryState`, ``listen()``
(one receive per request, optionally one receive ahead, stale skips, release of what was never
yielded), the ``ack`` with its settled checks, the message control (extend lease, release), the
broker's own heartbeat, the warning before a dead letter, and dead letters' logging. Events are
logged as ``<event_prefix>_<event>`` with the delivery's ``queue``, ``message_id``,
``receive_count`` and step fields.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import structlog
from taskiq import AsyncBroker
from taskiq.acks import AckableMessage

from dagster_taskiq.brokers._delivery import Delivery, DeliveryControl, DeliveryState
from dagster_taskiq.brokers._heartbeat import heartbeat_loop, start_heartbeat, stop_heartbeat
from dagster_taskiq.errors import AckError, BrokerUnavailableError
from dagster_taskiq.messaging import DeadLetter, Origin, step_log_fields
from dagster_taskiq.retrying import Retrying

if TYPE_CHECKING:
    from dagster_taskiq.brokers._settings import BrokerSettings

__all__ = ["BrokerBase", "DeliveryPolicy"]

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeliveryPolicy:
    """How a broker treats what it receives (from its settings)."""

    queue: str
    """The queue it listens to (named in logs)."""
    visibility_timeout: float
    """Seconds a received message stays invisible to other consumers without an extension."""
    heartbeat_enabled: bool
    heartbeat_every: float
    """Seconds between the broker's own extensions of a held message's lease."""
    dead_letter_queue: str | None = None
    """Where a message goes after ``max_deliveries`` receives (None: no dead-lettering)."""
    max_deliveries: int = 0
    receive_ahead: bool = False
    """Start the next receive as soon as a batch arrives (at most two batches held)."""


class BrokerBase(AsyncBroker, abc.ABC):
    """The shared part of a dagster-taskiq broker backend (see the module's docstring).

    A subclass sets ``event_prefix`` (``"sqs"``), ``service``, ``target_fields``,
    ``unavailable_error``, ``is_transient``, ``settings`` (its own settings class, annotated
    in its body) and ``server``; calls :meth:`_hold_deliveries` in its ``__init__`` with its
    :class:`DeliveryPolicy`; implements the abstract methods; wraps each call to its service
    in :meth:`_call`.
    """

    event_prefix: ClassVar[str]
    service: ClassVar[str]
    """The service's name in errors (``"Redis"``)."""
    target_fields: ClassVar[tuple[str, str]] = ("server", "queue")
    """The log fields naming the server (``self.server``) and the queue of a call."""
    unavailable_error: ClassVar[type[BrokerUnavailableError]] = BrokerUnavailableError
    """Raised when a call's retry budget is spent (a ``BrokerUnavailableError``)."""
    policy: DeliveryPolicy
    server: str
    """Where the service is, without credentials (named in logs and errors)."""
    settings: BrokerSettings

    def _hold_deliveries(self, policy: DeliveryPolicy) -> None:
        self.policy = policy
        self._deliveries: dict[str, Delivery] = {}
        self._heartbeats: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger(f"dagster_taskiq_{self.event_prefix}")
        self._retry_policies: dict[str, Retrying] = {}

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """Whether a failure of the service is worth retrying (override: the service's errors)."""
        return isinstance(exc, OSError | asyncio.TimeoutError)

    # --- calls to the service --------------------------------------------------------------------

    async def _call(
        self,
        operation: str,
        call: Callable[[], Awaitable[_T]],
        *,
        queue: str | None = None,
        **log_fields: Any,
    ) -> _T:
        """``await call()`` about ``queue`` (default: the listened-to one), retrying transient
        failures within the settings' budget (``dagster_taskiq.retrying``)."""
        return await self._retrying(queue or self.policy.queue).call(
            operation, call, log_fields=log_fields
        )

    def _retrying(self, queue: str) -> Retrying:
        """The retry policy of calls about ``queue`` (one per queue: the queue names the target)."""
        policy = self._retry_policies.get(queue)
        if policy is None:
            where, what = self.target_fields
            policy = self._retry_policies[queue] = Retrying(
                budget=self.settings.retry_budget,
                is_transient=type(self).is_transient,
                logger=self._log,
                event_prefix=self.event_prefix,
                target={where: self.server, what: queue},
                unreachable=f"{self.service} at {self.server} unreachable for {what} {queue!r}",
                error=self.unavailable_error,
            )
        return policy

    # --- the transport: what a backend writes --------------------------------------------------

    @abc.abstractmethod
    async def _receive(self) -> list[Delivery]:
        """One receive: the deliveries it brought (each made with :meth:`_hold`), maybe none."""

    @abc.abstractmethod
    async def _delete(self, delivery: Delivery) -> None:
        """Remove the message from its queue; ``AckError`` if it is no longer this consumer's."""

    @abc.abstractmethod
    async def _extend(self, delivery: Delivery, seconds: float) -> float:
        """Keep the message invisible for ``seconds`` from now; returns the seconds granted."""

    @abc.abstractmethod
    async def _give_back(self, delivery: Delivery) -> None:
        """Make the message deliverable to other consumers now."""

    # --- receiving -----------------------------------------------------------------------------

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """Yield received messages; receive again only when the consumer asks for more.

        With ``receive_ahead`` the next receive starts as soon as a batch arrives. What was
        received stays invisible (heartbeat) until it is yielded; anything unyielded when the
        consumer closes the generator is released at once for other consumers.
        """
        held: collections.deque[Delivery] = collections.deque()
        ahead: asyncio.Task[list[Delivery]] | None = None
        try:
            while True:
                if not held:
                    if ahead is not None:
                        batch, ahead = await ahead, None
                    else:
                        batch = await self._receive()
                    held.extend(batch)
                    if held and self.policy.receive_ahead:
                        ahead = asyncio.create_task(self._receive())
                    continue
                delivery = held.popleft()
                if not self._is_stale(delivery):
                    yield AckableMessage(data=delivery.body, ack=delivery.ack)
        finally:
            if ahead is not None:
                held.extend(await _cancelled_receive(ahead))
            await self._release_unyielded(list(held))

    def _hold(self, delivery: Delivery) -> Delivery:
        """Keep ``delivery`` until it is settled: heartbeat it, warn on its last delivery."""
        self._deliveries[delivery.handle] = delivery
        policy = self.policy
        if policy.heartbeat_enabled:
            delivery.heartbeat = start_heartbeat(self._heartbeats, self._heartbeat(delivery))
        self._log.debug(f"{self.event_prefix}_message_received", **delivery.log_fields())
        if policy.dead_letter_queue is not None and (
            (delivery.receive_count or 0) >= policy.max_deliveries
        ):
            self._log.warning(
                f"{self.event_prefix}_last_delivery_before_dead_letter_queue",
                dead_letter_queue=policy.dead_letter_queue,
                max_deliveries=policy.max_deliveries,
                **delivery.log_fields(),
            )
        return delivery

    def _is_stale(self, delivery: Delivery) -> bool:
        """Held (unyielded) past its visibility without a heartbeat: it is someone else's now."""
        if delivery.heartbeat is not None:
            return False
        timeout = self.policy.visibility_timeout
        margin = min(5.0, timeout / 10)  # leave the consumer time to claim and extend it
        held_for = time.monotonic() - delivery.received_at
        if held_for < timeout - margin:
            return False
        self.forget(delivery)
        self._log.warning(
            f"{self.event_prefix}_stale_delivery_skipped",
            held_for=round(held_for, 3),
            **delivery.log_fields(),
        )
        return True

    async def _release_unyielded(self, deliveries: list[Delivery]) -> None:
        """Give back what was received and never yielded (best effort: the lease ends anyway)."""
        for delivery in deliveries:
            try:
                await self.release(delivery)
            except Exception:
                self.stop_heartbeat(delivery)
                self.forget(delivery)

    # --- settling and leases -------------------------------------------------------------------

    def message_control(self, message: AckableMessage) -> DeliveryControl | None:
        """Extend / release a message this broker's ``listen()`` yielded and holds (else None)."""
        delivery = self._held(message)
        return None if delivery is None else DeliveryControl(delivery)

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting in this broker's queue (``messaging.SupportsQueueDepth``)."""
        return {self.step_queue(): await self._queue_depth()}

    async def _queue_depth(self) -> int:
        """The transport's count of messages waiting to be received in the listened-to queue."""
        raise NotImplementedError

    def step_queue(self, label: object = None) -> str:
        """Where a message with ``queue`` label ``label`` goes (``messaging.SupportsOrigin``)."""
        return self.settings.step_queue(label)

    def origin(self, message: AckableMessage) -> Origin | None:
        """This broker's queue, as senders name it, for a message it holds (else None)."""
        delivery = self._held(message)
        return None if delivery is None else Origin(self.step_queue(), delivery.message_id)

    def _held(self, message: AckableMessage) -> Delivery | None:
        delivery = getattr(message.ack, "__self__", None)
        if not isinstance(delivery, Delivery) or self._deliveries.get(delivery.handle) is not (
            delivery
        ):
            return None
        return delivery

    async def ack_delivery(self, delivery: Delivery) -> None:
        """Delete ``delivery``'s message (once: acking again does nothing)."""
        if delivery.state is DeliveryState.ACKED:
            return
        if delivery.state is DeliveryState.RELEASED:
            raise AckError(
                f"{delivery.describe()} was released; acking it now could delete another "
                f"consumer's delivery"
            )
        self.stop_heartbeat(delivery)
        await self._delete(delivery)
        delivery.state = DeliveryState.ACKED
        self.forget(delivery)
        self._log.debug(f"{self.event_prefix}_message_acked", **delivery.log_fields())

    async def extend_lease(self, delivery: Delivery, seconds: float) -> None:
        """Keep ``delivery``'s message invisible for ``seconds`` from now."""
        self._check_held(delivery)
        granted = await self._extend(delivery, seconds)
        self._log.debug(
            f"{self.event_prefix}_visibility_extended",
            visibility_timeout=granted,
            **delivery.log_fields(),
        )

    async def release(self, delivery: Delivery) -> None:
        """Give ``delivery``'s message back for redelivery now."""
        self.stop_heartbeat(delivery)
        self._check_held(delivery)
        await self._give_back(delivery)
        delivery.state = DeliveryState.RELEASED
        self.forget(delivery)
        self._log.info(f"{self.event_prefix}_message_released", **delivery.log_fields())

    def _check_held(self, delivery: Delivery) -> None:
        if delivery.state is not DeliveryState.HELD:
            raise AckError(f"{delivery.describe()} is already {delivery.state.value}")

    def forget(self, delivery: Delivery) -> None:
        """Stop tracking ``delivery`` (settled, or no longer this consumer's)."""
        if self._deliveries.get(delivery.handle) is delivery:
            del self._deliveries[delivery.handle]

    def stop_heartbeat(self, delivery: Delivery) -> None:
        """Stop the broker's own heartbeat of ``delivery`` (idempotent)."""
        stop_heartbeat(delivery)

    def stop_heartbeats(self) -> None:
        """Stop every heartbeat and forget every delivery (the broker is shutting down)."""
        for delivery in list(self._deliveries.values()):
            stop_heartbeat(delivery)
        self._deliveries.clear()

    async def _heartbeat(self, delivery: Delivery) -> None:
        await heartbeat_loop(
            self.policy.heartbeat_every,
            lambda: self.extend_lease(delivery, self.policy.visibility_timeout),
            stop_on=AckError,
            logger=self._log,
            event_prefix=self.event_prefix,
            log_fields=delivery.log_fields,
        )

    # --- dead letters --------------------------------------------------------------------------

    def _dead_letter(
        self,
        *,
        body: bytes,
        message_id: str | None,
        receive_count: int | None,
        step: Mapping[str, str],
        delete: Callable[[], Awaitable[None]],
    ) -> DeadLetter:
        """A dead letter whose ``ack`` calls ``delete``; its receipt and ack are logged."""
        fields = {
            "queue": self.policy.queue,
            "dead_letter_queue": self.policy.dead_letter_queue,
            "message_id": message_id,
            "receive_count": receive_count,
            **step_log_fields(step),
        }
        self._log.warning(f"{self.event_prefix}_dead_letter_received", **fields)

        async def ack() -> None:
            await delete()
            self._log.info(f"{self.event_prefix}_dead_letter_acked", **fields)

        return DeadLetter(body=body, receive_count=receive_count, message_id=message_id, ack=ack)


async def _cancelled_receive(task: asyncio.Task[list[Delivery]]) -> list[Delivery]:
    """Stop a receive made ahead; what it already got (if anything) is returned for release."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        return await task
    return []
