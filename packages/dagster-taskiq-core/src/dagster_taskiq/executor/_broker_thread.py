"""A TaskIQ broker driven from synchronous code: its own event loop on a daemon thread.

Dagster's run loop is synchronous; the brokers are asyncio. The executor sends through this
bridge, which keeps one loop (and so one broker client, one connection pool) for the whole run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import structlog
from taskiq import AsyncBroker, TaskiqMessage, TaskiqMiddleware
from taskiq.exceptions import SendTaskError
from taskiq.labels import prepare_label
from taskiq.utils import maybe_awaitable

from dagster_taskiq.errors import ExecutorConfigError, MessageRefusedError
from dagster_taskiq.messaging import (
    LABEL_ENQUEUE_ATTEMPT,
    LABEL_IDEMPOTENCY_KEY,
    LABEL_QUEUE,
    LABEL_RETRY_NUMBER,
    LABEL_RUN_ID,
    LABEL_STEP_KEY,
    STEP_TASK_NAME,
    DeadLetter,
    SupportsBatchSend,
    SupportsDeadLetters,
    SupportsOrigin,
    deduplication_id,
)
from dagster_taskiq.payloads import OpExecutionTask
from dagster_taskiq.signing import LABEL_SIGNED_QUEUE, MessageSigner, MessageVerifier

_T = TypeVar("_T")
_log = structlog.get_logger("dagster_taskiq.executor")

SEND_CONCURRENCY = 16
"""Sends in flight at once (an SQS client pools 10 connections by default)."""

SEND_TIMEOUT = 60.0
"""Seconds one send may take once started (the broker's own retries run within it)."""

BATCH_SEND = 50
"""Steps handed to a broker's batch send at once (it cuts them to its own request limits)."""


def step_labels(task: OpExecutionTask) -> dict[str, Any]:
    """The labels a step message carries (see :mod:`dagster_taskiq.messaging`)."""
    labels: dict[str, Any] = {
        LABEL_IDEMPOTENCY_KEY: task.idempotency_key,
        LABEL_RUN_ID: task.run_id,
        LABEL_STEP_KEY: task.step_key,
        LABEL_RETRY_NUMBER: task.retry_number,
        LABEL_ENQUEUE_ATTEMPT: task.enqueue_attempt,
    }
    if task.queue:
        labels[LABEL_QUEUE] = task.queue
    return labels


def step_message(
    task: OpExecutionTask, signer: MessageSigner | None = None, queue: str | None = None
) -> TaskiqMessage:
    """The TaskIQ message of a step, as ``AsyncKicker(STEP_TASK_NAME).kiq`` would make it;
    with ``signer``, signed for ``queue`` (where the broker sends it)."""
    payload = task.to_json()
    labels: dict[str, Any] = {}
    labels_types: dict[str, int] = {}
    signature = {} if signer is None else signer.labels(queue or "", payload)
    for name, value in {**step_labels(task), **signature}.items():
        labels[name], labels_types[name] = prepare_label(value)
    return TaskiqMessage(
        task_id=deduplication_id(task.idempotency_key, task.retry_number, task.enqueue_attempt),
        task_name=STEP_TASK_NAME,
        labels=labels,
        labels_types=labels_types,
        args=[payload],
        kwargs={},
    )


class BrokerThread:
    """Owns ``broker`` on a private event loop; every method is called from sync code."""

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        startup_timeout: float = 120.0,
        send_timeout: float = SEND_TIMEOUT,
        signer: MessageSigner | None = None,
    ) -> None:
        self.broker = broker
        self.send_timeout = send_timeout
        self.signer = signer
        if signer is not None and not isinstance(broker, SupportsOrigin):
            raise ExecutorConfigError(
                f"signing_key: {type(broker).__name__} cannot name the queue a message goes "
                "to, which a signature covers; use a dagster-taskiq broker backend"
            )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="dagster-taskiq-broker", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._call(broker.startup(), timeout=startup_timeout)
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, awaitable: Awaitable[_T], *, timeout: float | None = 60.0) -> _T:
        return asyncio.run_coroutine_threadsafe(_await(awaitable), self._loop).result(timeout)

    def send(self, tasks: Sequence[OpExecutionTask]) -> None:
        """Send the steps, ``SEND_CONCURRENCY`` at a time; returns once every send is
        acknowledged by the broker. Each send has ``send_timeout`` seconds once started, so a
        wide fan-out (a thousand steps ready at once) is not held to one batch deadline."""
        if tasks:
            self._call(self._send_all(tasks), timeout=None)

    async def _send_all(self, tasks: Sequence[OpExecutionTask]) -> None:
        limit = asyncio.Semaphore(SEND_CONCURRENCY)
        size = BATCH_SEND if isinstance(self.broker, SupportsBatchSend) else 1
        chunks = [tasks[i : i + size] for i in range(0, len(tasks), size)]

        async def send(chunk: Sequence[OpExecutionTask]) -> None:
            async with limit:
                await asyncio.wait_for(self._send(chunk), self.send_timeout)

        await asyncio.gather(*(send(chunk) for chunk in chunks))

    async def _send(self, tasks: Sequence[OpExecutionTask]) -> None:
        """Send ``tasks`` as ``AsyncKicker.kiq`` sends one message (the broker's middlewares
        around the send, ``SendTaskError`` for a failure), several at once through the
        broker's batch send when it has one."""
        messages = []
        for task in tasks:
            message = self._message(task)
            for middleware in self.broker.middlewares:
                if middleware.__class__.pre_send is not TaskiqMiddleware.pre_send:
                    message = await maybe_awaitable(middleware.pre_send(message))
            messages.append(message)
        wire = [self.broker.formatter.dumps(m) for m in messages]
        try:
            if len(wire) > 1 and isinstance(self.broker, SupportsBatchSend):
                await self.broker.kick_batch(wire)
            else:
                for one in wire:
                    await self.broker.kick(one)
        except Exception as exc:
            raise SendTaskError from exc
        for message in messages:
            for middleware in reversed(self.broker.middlewares):
                if middleware.__class__.post_send is not TaskiqMiddleware.post_send:
                    await maybe_awaitable(middleware.post_send(message))
        for task in tasks:
            _log.debug(
                "step_enqueued",
                key=task.idempotency_key,
                retry_number=task.retry_number,
                enqueue_attempt=task.enqueue_attempt,
            )

    def _message(self, task: OpExecutionTask) -> TaskiqMessage:
        if self.signer is None:
            return step_message(task)
        assert isinstance(self.broker, SupportsOrigin)
        return step_message(task, self.signer, self.broker.step_queue(task.queue))

    def authentic(self, labels: Mapping[str, Any], payload: str) -> bool:
        """Whether a message (a dead letter) was signed with this executor's key (True when the
        executor signs nothing); a refused one is logged."""
        if self.signer is None:
            return True
        try:
            signed_for = labels.get(LABEL_SIGNED_QUEUE)
            MessageVerifier([self.signer.key]).verify(labels, str(signed_for), payload)
        except MessageRefusedError as exc:
            _log.warning("dead_letter_refused", reason=exc.reason.value, detail=exc.detail)
            return False
        return True

    @property
    def supports_dead_letters(self) -> bool:
        return isinstance(self.broker, SupportsDeadLetters)

    def dead_letters(self, max_messages: int = 10) -> list[DeadLetter]:
        """What the broker's dead-letter queue received (empty if it has none)."""
        if not isinstance(self.broker, SupportsDeadLetters):
            return []
        return self._call(self.broker.receive_dead_letters(max_messages))

    def ack_dead_letter(self, letter: DeadLetter) -> None:
        self._call(letter.ack())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self.broker.shutdown(), timeout=30.0)
        except Exception as exc:  # shutting down: report, do not mask the run's outcome
            _log.warning("broker_shutdown_failed", error=repr(exc))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


async def _await(awaitable: Awaitable[_T]) -> _T:
    return await awaitable
