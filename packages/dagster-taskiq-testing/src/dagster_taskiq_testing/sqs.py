"""``InMemorySqs``: one in-process SQS account, driven through boto3-shaped clients."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from dagster_taskiq_testing import _message_ops, _queue_ops
from dagster_taskiq_testing._async_client import AsyncSqsClient
from dagster_taskiq_testing._clock import Clock, RealClock
from dagster_taskiq_testing._errors import DagsterTaskIQTestingError, SqsError
from dagster_taskiq_testing._ids import new_id
from dagster_taskiq_testing._inspection import CallRecord, MessageView
from dagster_taskiq_testing._message import MessageState
from dagster_taskiq_testing._queue import Queue
from dagster_taskiq_testing._service_model import operation_spec, validate_params
from dagster_taskiq_testing._state import AccountState
from dagster_taskiq_testing._sync_client import SqsClient
from dagster_taskiq_testing._waiting import AsyncWaiter, Waiters

_Handler = Callable[[AccountState, Mapping[str, Any], float], dict[str, Any]]

# boto3 method name -> (SQS operation name, handler, whether it can make messages receivable)
OPERATIONS: dict[str, tuple[str, _Handler, bool]] = {
    "create_queue": ("CreateQueue", _queue_ops.create_queue, False),
    "get_queue_url": ("GetQueueUrl", _queue_ops.get_queue_url, False),
    "get_queue_attributes": ("GetQueueAttributes", _queue_ops.get_queue_attributes, False),
    "set_queue_attributes": ("SetQueueAttributes", _queue_ops.set_queue_attributes, True),
    "list_queues": ("ListQueues", _queue_ops.list_queues, False),
    "list_dead_letter_source_queues": (
        "ListDeadLetterSourceQueues",
        _queue_ops.list_dead_letter_source_queues,
        False,
    ),
    "purge_queue": ("PurgeQueue", _queue_ops.purge_queue, True),
    "delete_queue": ("DeleteQueue", _queue_ops.delete_queue, True),
    "tag_queue": ("TagQueue", _queue_ops.tag_queue, False),
    "untag_queue": ("UntagQueue", _queue_ops.untag_queue, False),
    "list_queue_tags": ("ListQueueTags", _queue_ops.list_queue_tags, False),
    "send_message": ("SendMessage", _message_ops.send_message, True),
    "send_message_batch": ("SendMessageBatch", _message_ops.send_message_batch, True),
    "delete_message": ("DeleteMessage", _message_ops.delete_message, True),
    "delete_message_batch": ("DeleteMessageBatch", _message_ops.delete_message_batch, True),
    "change_message_visibility": (
        "ChangeMessageVisibility",
        _message_ops.change_message_visibility,
        True,
    ),
    "change_message_visibility_batch": (
        "ChangeMessageVisibilityBatch",
        _message_ops.change_message_visibility_batch,
        True,
    ),
}


def _metadata() -> dict[str, Any]:
    request_id = new_id()
    return {
        "RequestId": request_id,
        "HTTPStatusCode": 200,
        "HTTPHeaders": {
            "x-amzn-requestid": request_id,
            "content-type": "application/x-amz-json-1.0",
        },
        "RetryAttempts": 0,
    }


class InMemorySqs:
    """An in-process SQS account with the semantics AWS documents.

    Drive it through ``client()`` (boto3-shaped) or ``async_client()`` (aiobotocore-shaped);
    both may be used from any number of threads and event loops at once. Time comes from
    ``clock``: the real clock by default, or a ``FakeClock`` that tests advance by hand.

    Every call is logged (``calls``) unless ``record_calls=False``; the log keeps the latest
    ``max_recorded_calls`` (``None``: all of them, which slows long runs as the log grows).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        region_name: str = "us-east-1",
        account_id: str = "123456789012",
        endpoint_url: str | None = None,
        record_calls: bool = True,
        max_recorded_calls: int | None = 10_000,
    ) -> None:
        self._clock: Clock = clock if clock is not None else RealClock()
        self.region_name = region_name
        self.account_id = account_id
        self.endpoint_url = endpoint_url or f"https://sqs.{region_name}.amazonaws.com"
        self.record_calls = record_calls
        self._lock = threading.Lock()
        self._waiters = Waiters(self._lock)
        self._state = AccountState(self._clock, region_name, account_id, self.endpoint_url)
        # (method, params, at, response, error code): tuples are cheap; CallRecords are built
        # when a test reads the log. ``params`` is the call's own ``**kwargs`` dict.
        self._calls: deque[tuple[str, dict[str, Any], float, dict[str, Any] | None, str | None]] = (
            deque(maxlen=max_recorded_calls)
        )
        self._clock_callback = _clock_callback(self)
        self._clock.subscribe(self._clock_callback)

    def __repr__(self) -> str:
        return f"InMemorySqs(queues={len(self._state.queues)}, clock={self._clock!r})"

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- clients ----------------------------------------------------------------------------

    def client(self) -> SqsClient:
        """A synchronous client shaped like ``boto3.client("sqs")``."""
        return SqsClient(self)

    def async_client(self) -> AsyncSqsClient:
        """An async client shaped like aiobotocore's; also an async context manager."""
        return AsyncSqsClient(self)

    # -- calls ------------------------------------------------------------------------------

    def invoke(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one non-blocking operation by its boto3 method name (``send_message``...)."""
        operation, handler, notifies = OPERATIONS[method]
        validate_params(operation_spec(operation), params)
        with self._lock:
            now = self._clock.now()
            try:
                response = handler(self._state, params, now)
            except SqsError as exc:
                self._record(method, params, now, None, exc.code)
                raise exc.to_client_error(operation) from None
            if notifies:
                self._waiters.notify()
            self._record(method, params, now, response, None)
        response["ResponseMetadata"] = _metadata()
        return response

    def receive(self, params: dict[str, Any]) -> dict[str, Any]:
        """``ReceiveMessage`` for a thread: long polls block this thread on a condition."""
        validate_params(operation_spec("ReceiveMessage"), params)
        url: str = params["QueueUrl"]
        with self._lock:
            now = self._clock.now()
            try:
                queue = self._state.queue(url)
                request = _message_ops.parse_receive(queue, params)
                deadline = now + request.wait_time
                while True:
                    messages = _message_ops.receive_now(self._state, queue, request, now)
                    if messages or now >= deadline:
                        break
                    self._waiters.wait(self._wait_timeout(queue, now, deadline))
                    now = self._clock.now()
                    queue = self._state.queue(url)
            except SqsError as exc:
                self._record("receive_message", params, now, None, exc.code)
                raise exc.to_client_error("ReceiveMessage") from None
            return self._received(params, now, messages)

    async def receive_async(self, params: dict[str, Any]) -> dict[str, Any]:
        """``ReceiveMessage`` for a task: long polls await an event, never blocking the loop."""
        validate_params(operation_spec("ReceiveMessage"), params)
        url: str = params["QueueUrl"]
        loop = asyncio.get_running_loop()
        waiter: AsyncWaiter | None = None
        request: _message_ops.ReceiveRequest | None = None
        deadline = 0.0
        try:
            while True:
                with self._lock:
                    if waiter is not None:
                        self._waiters.remove_async(waiter)
                        waiter = None
                    now = self._clock.now()
                    try:
                        queue = self._state.queue(url)
                        if request is None:
                            request = _message_ops.parse_receive(queue, params)
                            deadline = now + request.wait_time
                        messages = _message_ops.receive_now(self._state, queue, request, now)
                    except SqsError as exc:
                        self._record("receive_message", params, now, None, exc.code)
                        raise exc.to_client_error("ReceiveMessage") from None
                    if messages or now >= deadline:
                        return self._received(params, now, messages)
                    waiter = self._waiters.add_async(loop)
                    timeout = self._wait_timeout(queue, now, deadline)
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns normally when
                # the task is cancelled just as the event is set, and the cancel is lost.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await waiter.event.wait()
        finally:
            if waiter is not None:
                with self._lock:
                    self._waiters.remove_async(waiter)

    def _received(
        self, params: dict[str, Any], now: float, messages: list[dict[str, Any]]
    ) -> dict[str, Any]:
        response: dict[str, Any] = {"Messages": messages} if messages else {}
        self._record("receive_message", params, now, response, None)
        response["ResponseMetadata"] = _metadata()
        return response

    def _wait_timeout(self, queue: Queue, now: float, deadline: float) -> float | None:
        until = deadline
        change = queue.next_change_at(now)
        if change is not None and change < until:
            until = change
        return self._clock.real_timeout(until - now)

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        now: float,
        response: dict[str, Any] | None,
        error_code: str | None,
    ) -> None:
        if self.record_calls:
            self._calls.append((method, params, now, response, error_code))

    def _clock_jumped(self) -> None:
        with self._lock:
            self._waiters.notify()

    # -- inspection -------------------------------------------------------------------------

    def _queue(self, queue: str) -> Queue:
        name = queue.rstrip("/").rsplit("/", 1)[-1]
        found = self._state.queues.get(name)
        if found is None:
            raise DagsterTaskIQTestingError(f"no queue named {name!r} in this InMemorySqs")
        return found

    def queue_names(self) -> list[str]:
        with self._lock:
            return list(self._state.queues)

    def queue_url(self, name: str) -> str:
        with self._lock:
            return self._queue(name).url

    def queue_attributes(self, queue: str) -> dict[str, str]:
        """Every attribute of a queue (by name or URL), as ``GetQueueAttributes(All)`` returns."""
        with self._lock:
            return _queue_ops.queue_attributes(self._queue(queue), self._clock.now())

    def messages(self, queue: str, state: MessageState | str | None = None) -> list[MessageView]:
        """Snapshots of a queue's messages (by queue name or URL), optionally of one state."""
        wanted = MessageState(state) if state is not None else None
        with self._lock:
            found = self._queue(queue)
            now = self._clock.now()
            found.refresh(now)
            views = [MessageView.of(m, now) for m in found.messages()]
        return [v for v in views if wanted is None or v.state is wanted]

    def visible_messages(self, queue: str) -> list[MessageView]:
        return self.messages(queue, MessageState.VISIBLE)

    def in_flight_messages(self, queue: str) -> list[MessageView]:
        return self.messages(queue, MessageState.IN_FLIGHT)

    def delayed_messages(self, queue: str) -> list[MessageView]:
        return self.messages(queue, MessageState.DELAYED)

    def dead_letter_queue_name(self, queue: str) -> str:
        """The name of the dead-letter queue a queue's ``RedrivePolicy`` names."""
        with self._lock:
            policy = self._queue(queue).redrive_policy
        if policy is None:
            raise DagsterTaskIQTestingError(f"queue {queue!r} has no RedrivePolicy")
        return policy.target_name

    def dead_letter_messages(self, queue: str) -> list[MessageView]:
        """The messages in the dead-letter queue of ``queue`` (the source queue)."""
        return self.messages(self.dead_letter_queue_name(queue))

    @property
    def calls(self) -> list[CallRecord]:
        """The client calls so far (the latest ``max_recorded_calls``), oldest first."""
        with self._lock:
            calls = list(self._calls)
        return [CallRecord(*call) for call in calls]

    def calls_to(self, operation: str) -> list[CallRecord]:
        """The calls of one operation, by boto3 method name (``"send_message"``)."""
        return [call for call in self.calls if call.operation == operation]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def reset(self) -> None:
        """Delete every queue and forget every call; pending long polls fail as AWS's would."""
        with self._lock:
            for queue in self._state.queues.values():
                queue.clear()
            self._state.queues.clear()
            self._state.deleted_at.clear()
            self._calls.clear()
            self._waiters.notify()

    def close(self) -> None:
        """Stop listening to the clock (the account stays usable with a real clock)."""
        self._clock.unsubscribe(self._clock_callback)


def _clock_callback(account: InMemorySqs) -> Callable[[], None]:
    ref = weakref.ref(account)

    def callback() -> None:
        target = ref()
        if target is not None:
            target._clock_jumped()

    return callback
