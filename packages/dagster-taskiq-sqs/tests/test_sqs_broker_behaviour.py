"""The broker's SQS behaviour, each test on the stub (fake clock) and on a real server.

What every backend does (release and an expired lease redeliver, dead letters, deduplication,
routing) is the broker conformance suite's (``dagster_taskiq_testing.conformance``, which runs
the memory stub and SQS on moto); these tests are what is SQS's own: FIFO groups and order, batch
sends and size limits, queue attributes, receive-ahead, logs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs
from taskiq.acks import AckableMessage
from taskiq.brokers.inmemory_broker import InmemoryResultBackend
from taskiq.exceptions import SendTaskError
from taskiq.receiver import Receiver
from taskiq_aio_sqs import SQSBroker

from dagster_taskiq import CodePointer, OpExecutionTask, idempotency_key
from dagster_taskiq.executor._broker_thread import step_message
from dagster_taskiq.messaging import (
    LABEL_ENQUEUE_ATTEMPT,
    LABEL_IDEMPOTENCY_KEY,
    LABEL_RETRY_NUMBER,
    SupportsBatchSend,
    SupportsDeadLetters,
    SupportsMessageControl,
    SupportsReceiveLimit,
)
from dagster_taskiq_sqs import (
    FifoDelayError,
    LocalStackSqsBroker,
    MessageTooLargeError,
    QueueConfigurationError,
    QueueNotFoundError,
)

pytestmark = pytest.mark.usefixtures("debug_logs")


def labels_of(broker: LocalStackSqsBroker, message: AckableMessage) -> dict[str, Any]:
    return dict(broker.formatter.loads(message.data).labels)


def control_of(broker: LocalStackSqsBroker, message: AckableMessage) -> Any:
    control = broker.message_control(message)
    assert control is not None
    return control


async def test_is_a_taskiq_broker_with_the_core_protocols(harness) -> None:
    broker = await harness.broker()
    assert isinstance(broker, SQSBroker)
    assert isinstance(broker, SupportsMessageControl)
    assert isinstance(broker, SupportsDeadLetters)
    foreign = AckableMessage(data=b"{}", ack=lambda: None)
    assert broker.message_control(foreign) is None


async def test_taskiq_task_round_trip(harness, wait_until) -> None:
    """A plain TaskIQ task through taskiq's own Receiver (what `taskiq worker` runs)."""
    broker = await harness.broker()
    broker.with_result_backend(InmemoryResultBackend())

    @broker.task(task_name="tests.add")
    async def add(a: int, b: int) -> int:
        return a + b

    finish = asyncio.Event()
    listening = asyncio.create_task(Receiver(broker, run_startup=False).listen(finish))
    try:
        handle = await add.kiq(2, 3)
        result = await handle.wait_result(timeout=15)
        assert not result.is_err
        assert result.return_value == 5
        queue = broker.settings.queue
        await wait_until(lambda: harness.counts(queue) == (0, 0), 10, "the message deleted")
    finally:
        finish.set()
        await asyncio.wait_for(listening, 30)


async def test_message_goes_to_the_dead_letter_queue_after_max_receive_count(harness, kick) -> None:
    broker = await harness.broker(heartbeat_enabled=False, max_deliveries=2)
    await kick(broker, "run-1", "poison", payload='{"poison": true}')
    messages = broker.listen()
    with capture_logs() as logs:
        for expected in (1, 2):
            message = await anext(messages)
            assert control_of(broker, message).receive_count == expected
            await harness.pass_time(harness.visibility_timeout)
        await messages.aclose()
        # The next receive moves it aside: the source queue has nothing to deliver.
        assert harness.receive_now(broker.settings.queue) == []
        letters = await broker.receive_dead_letters()
    assert len(letters) == 1
    [letter] = letters
    assert letter.body == message.data
    assert letter.receive_count == 2
    assert letter.message_id == message.ack.__self__.message_id  # type: ignore[attr-defined]
    events = {entry["event"]: entry for entry in logs}
    last = events["sqs_last_delivery_before_dead_letter_queue"]
    assert last["key"] == "run-1:poison"
    assert last["receive_count"] == 2
    moved = events["sqs_dead_letter_received"]
    assert moved["key"] == "run-1:poison"
    assert moved["dead_letter_queue"] == broker.settings.dead_letter_queue
    assert moved["enqueue_attempt"] == 0
    await letter.ack()
    assert harness.counts(broker.settings.dead_letter_queue) == (0, 0)


async def test_identical_resend_is_deduplicated_and_new_attempts_are_delivered(
    harness, kick
) -> None:
    broker = await harness.broker()
    await kick(broker, "run-1", "a")
    await kick(broker, "run-1", "a")  # the same send again (e.g. a retried request)
    await kick(broker, "run-1", "a", enqueue_attempt=1)  # a deliberate re-enqueue
    await kick(broker, "run-1", "a", retry_number=1)  # a RetryPolicy retry
    queue = broker.settings.queue
    assert harness.counts(queue) == (3, 0)
    messages = broker.listen()
    seen = []
    for _ in range(3):
        message = await anext(messages)
        labels = labels_of(broker, message)
        seen.append((int(labels[LABEL_RETRY_NUMBER]), int(labels[LABEL_ENQUEUE_ATTEMPT])))
        await message.ack()
    await messages.aclose()
    assert seen == [(0, 0), (0, 1), (1, 0)]  # one group per step: in send order
    assert harness.counts(queue) == (0, 0)


async def test_steps_of_one_run_are_delivered_concurrently(harness, kick) -> None:
    broker = await harness.broker(max_messages=1)
    await kick(broker, "run-1", "a")
    await kick(broker, "run-1", "b")
    messages = broker.listen()
    first = await anext(messages)
    second = await anext(messages)  # while the first is still in flight
    keys = {labels_of(broker, m)[LABEL_IDEMPOTENCY_KEY] for m in (first, second)}
    assert keys == {"run-1:a", "run-1:b"}
    await first.ack()
    await second.ack()
    await messages.aclose()


async def test_per_run_groups_deliver_a_run_one_step_at_a_time(harness, kick) -> None:
    broker = await harness.broker(max_messages=1, group_strategy="per_run")
    await kick(broker, "run-1", "a")
    await kick(broker, "run-1", "b")
    messages = broker.listen()
    first = await anext(messages)
    assert labels_of(broker, first)[LABEL_IDEMPOTENCY_KEY] == "run-1:a"
    assert harness.receive_now(broker.settings.queue) == []  # b waits for a
    await first.ack()
    second = await anext(messages)
    assert labels_of(broker, second)[LABEL_IDEMPOTENCY_KEY] == "run-1:b"
    await second.ack()
    await messages.aclose()


async def test_heartbeat_keeps_a_long_task_invisible_past_the_timeout(
    harness, kick, wait_until
) -> None:
    interval = 0.05 if harness.is_stub else 0.5
    timeout = harness.visibility_timeout if harness.is_stub else 2
    broker = await harness.broker(heartbeat_interval=interval, visibility_timeout=timeout)
    await kick(broker, "run-1", "long")
    messages = broker.listen()
    message = await anext(messages)
    queue = broker.settings.queue
    if harness.stub is not None:

        def extensions() -> int:
            return len(harness.stub.calls_to("change_message_visibility"))

        for _ in range(4):  # 4 x 20 s of fake time: well past the 30 s timeout
            before = extensions()
            await wait_until(lambda: extensions() > before, 5, "a heartbeat")  # noqa: B023
            await harness.pass_time(20)
    else:
        await asyncio.sleep(2 * timeout + 0.5)
    assert harness.receive_now(queue) == []  # still invisible
    assert harness.counts(queue) == (0, 1)
    await message.ack()
    if harness.stub is not None:
        after_ack = extensions()
        await asyncio.sleep(10 * interval)
        assert extensions() == after_ack  # the heartbeat stopped with the ack
    assert harness.counts(queue) == (0, 0)
    await messages.aclose()


async def test_message_control_takes_over_the_heartbeat(stub_harness, kick) -> None:
    broker = await stub_harness.broker(heartbeat_interval=0.02)
    await kick(broker, "run-1", "a")
    messages = broker.listen()
    message = await anext(messages)
    control = control_of(broker, message)
    with capture_logs() as logs:
        await control.extend_lease(120.2)
    [extended] = [
        e
        for e in logs
        if e["event"] == "sqs_visibility_extended" and e["visibility_timeout"] == 121
    ]
    assert extended["visibility_timeout"] == 121
    assert extended["key"] == "run-1:a"
    calls = len(stub_harness.stub.calls_to("change_message_visibility"))
    await asyncio.sleep(0.2)  # ten automatic intervals
    assert len(stub_harness.stub.calls_to("change_message_visibility")) == calls
    await stub_harness.pass_time(100)
    assert stub_harness.receive_now(broker.settings.queue) == []  # extended to 121 s
    await message.ack()
    await messages.aclose()


async def test_closing_the_listener_releases_what_it_received_but_did_not_yield(
    harness, kick
) -> None:
    broker = await harness.broker(max_messages=10)
    for step in ("a", "b", "c"):
        await kick(broker, "run-1", step)
    messages = broker.listen()
    first = await anext(messages)
    if not harness.is_stub:  # a server may return fewer than all three in one receive
        assert sum(harness.counts(broker.settings.queue)) == 3
    await messages.aclose()
    visible, in_flight = harness.counts(broker.settings.queue)
    assert in_flight == 1  # only the one yielded is still taken
    assert visible == 2
    await first.ack()


async def test_receive_ahead_fetches_the_next_batch_while_the_first_is_taken(
    stub_harness, kick, wait_until
) -> None:
    broker = await stub_harness.broker(max_messages=2, receive_ahead=True)
    for step in ("a", "b", "c", "d", "e"):
        await kick(broker, "run-1", step)
    queue = broker.settings.queue
    messages = broker.listen()
    first = await anext(messages)  # a batch of two arrived; the next receive is on its way
    await wait_until(lambda: stub_harness.counts(queue) == (1, 4), 5, "the batch ahead")
    await messages.aclose()  # the unyielded three go back at once
    assert stub_harness.counts(queue) == (4, 1)
    await first.ack()


@pytest.mark.sqs_server
async def test_a_held_message_past_its_timeout_is_skipped_not_yielded(server_harness, kick) -> None:
    """Without a heartbeat, a message held too long may be someone else's: never yield it."""
    broker = await server_harness.broker(heartbeat_enabled=False, max_messages=10)
    await kick(broker, "run-1", "a")
    await kick(broker, "run-1", "b")
    messages = broker.listen()
    first = await anext(messages)
    await asyncio.sleep(server_harness.visibility_timeout + 0.3)  # "b" waited past its timeout
    with capture_logs() as logs:
        again = await anext(messages)
    [skipped] = [entry for entry in logs if entry["event"] == "sqs_stale_delivery_skipped"]
    assert skipped["key"] != labels_of(broker, first)[LABEL_IDEMPOTENCY_KEY]
    assert control_of(broker, again).receive_count == 2  # received afresh
    await messages.aclose()


async def test_delay_on_a_fifo_queue_is_refused_before_sending(harness, kick) -> None:
    broker = await harness.broker()
    with pytest.raises(SendTaskError) as excinfo:  # taskiq's kiq wraps what kick raises
        await kick(broker, "run-1", "a", delay=5)
    assert isinstance(excinfo.value.__cause__, FifoDelayError)
    assert "5 s delay" in str(excinfo.value.__cause__)
    assert "FIFO" in str(excinfo.value.__cause__)
    assert harness.counts(broker.settings.queue) == (0, 0)


async def test_delay_on_a_standard_queue_is_honoured(harness, kick) -> None:
    broker = await harness.broker(queue_name=harness.queue_name(fifo=False))
    await kick(broker, "run-1", "a", delay=1)
    assert harness.receive_now(broker.settings.queue) == []  # delayed
    await harness.pass_time(1)
    [message] = harness.receive_now(broker.settings.queue)
    assert "MessageGroupId" not in message.get("Attributes", {})


async def test_payload_over_the_queue_maximum_is_refused_with_size_and_limit(harness, kick) -> None:
    name = harness.queue_name()
    harness.create_queue(
        name, VisibilityTimeout=harness.visibility_timeout, MaximumMessageSize=1024
    )
    broker = await harness.broker(queue_name=name, dead_letters_enabled=False)
    assert broker.queue_info.max_message_size == 1024
    with pytest.raises(SendTaskError) as excinfo:
        await kick(broker, "run-1", "big", payload="x" * 2000)
    error = excinfo.value.__cause__
    assert isinstance(error, MessageTooLargeError)
    assert error.limit == 1024
    assert error.size > 2000
    assert f"is {error.size} bytes" in str(error)
    assert "(1024 bytes)" in str(error)
    assert harness.counts(name) == (0, 0)
    await kick(broker, "run-1", "small", payload="x" * 100)
    assert harness.counts(name) == (1, 0)


async def test_existing_queue_that_disagrees_with_the_settings_is_refused(harness) -> None:
    name = harness.queue_name()
    harness.create_queue(name, VisibilityTimeout=harness.visibility_timeout + 7)
    with pytest.raises(QueueConfigurationError) as excinfo:
        await harness.broker(queue_name=name)
    message = str(excinfo.value)
    assert f"VisibilityTimeout is {harness.visibility_timeout + 7}" in message
    assert "DAGSTER_TASKIQ_SQS_VISIBILITY_TIMEOUT" in message
    assert "no RedrivePolicy" in message
    assert "DAGSTER_TASKIQ_SQS_DEAD_LETTERS_ENABLED" in message


async def test_redrive_policy_with_another_max_receive_count_is_refused(harness) -> None:
    first = await harness.broker(max_deliveries=3)
    with pytest.raises(QueueConfigurationError) as excinfo:
        await harness.broker(queue_name=first.settings.queue, max_deliveries=5)
    assert "maxReceiveCount is 3" in str(excinfo.value)
    assert "DAGSTER_TASKIQ_SQS_MAX_DELIVERIES" in str(excinfo.value)


async def test_existing_queue_that_matches_is_used_as_it_is(harness, kick) -> None:
    first = await harness.broker()
    second = await harness.broker(queue_name=first.settings.queue, create_queues_if_missing=False)
    assert second.queue_info == first.queue_info
    await kick(second, "run-1", "a")
    message = await anext(first.listen())
    await message.ack()


async def test_missing_queue_is_a_clear_error_when_creation_is_off(harness) -> None:
    settings = harness.settings(create_queues_if_missing=False)
    with pytest.raises(QueueNotFoundError) as excinfo:
        await harness.broker(settings)
    assert settings.dead_letter_queue in str(excinfo.value)
    assert "DAGSTER_TASKIQ_SQS_CREATE_QUEUES_IF_MISSING" in str(excinfo.value)


async def test_queue_label_routes_to_another_queue(harness, kick) -> None:
    broker = await harness.broker()
    other = harness.queue_name("other")
    await kick(broker, "run-1", "a", queue=other)
    assert harness.counts(other) == (1, 0)
    assert harness.counts(broker.settings.queue) == (0, 0)


async def test_every_message_event_is_logged_with_queue_id_key_and_attempt(harness, kick) -> None:
    broker = await harness.broker()
    with capture_logs() as logs:
        await kick(broker, "run-1", "a", enqueue_attempt=2)
        messages = broker.listen()
        message = await anext(messages)
        await control_of(broker, message).extend_lease(10)
        await message.ack()
        await messages.aclose()
    events = {entry["event"]: entry for entry in logs}
    for event in (
        "sqs_message_sent",
        "sqs_message_received",
        "sqs_visibility_extended",
        "sqs_message_acked",
    ):
        entry = events[event]
        assert entry["queue"] == broker.settings.queue, event
        assert entry["message_id"], event
        assert entry["key"] == "run-1:a", event
        assert entry["enqueue_attempt"] == 2, event
    assert events["sqs_message_received"]["receive_count"] == 1


def _step_messages(broker: LocalStackSqsBroker, count: int, payload: str = "{}") -> list[Any]:
    """Step messages as the executor's bridge makes them (its ``step_message``)."""
    messages = []
    for n in range(count):
        task = OpExecutionTask(
            run_id="run-1",
            step_key=f"leaf_{n:02d}",
            idempotency_key=idempotency_key("run-1", f"leaf_{n:02d}"),
            code=CodePointer(job_name="j", module=payload),
            instance_ref={},
            created_at=1.0,
        )
        messages.append(broker.formatter.dumps(step_message(task)))
    return messages


async def _drain(broker: LocalStackSqsBroker, count: int) -> list[str]:
    keys = []
    messages = broker.listen()
    for _ in range(count):
        message = await anext(messages)
        keys.append(labels_of(broker, message)[LABEL_IDEMPOTENCY_KEY])
        await message.ack()
    await messages.aclose()
    return keys


async def test_a_batch_send_delivers_every_step_once_in_requests_of_ten(harness) -> None:
    broker = await harness.broker()
    assert isinstance(broker, SupportsBatchSend)
    await broker.kick_batch(_step_messages(broker, 23))
    keys = await _drain(broker, 23)
    assert sorted(keys) == [f"run-1:leaf_{n:02d}" for n in range(23)]
    if harness.stub is not None:
        batches = harness.stub.calls_to("send_message_batch")
        assert [len(c.params["Entries"]) for c in batches] == [10, 10, 3]


async def test_a_batch_send_keeps_each_request_within_the_queue_size_limit(harness) -> None:
    name = harness.queue_name()
    harness.create_queue(
        name, VisibilityTimeout=harness.visibility_timeout, MaximumMessageSize=4096
    )
    broker = await harness.broker(queue_name=name, dead_letters_enabled=False)
    messages = _step_messages(broker, 5, payload="x" * 400)  # 1,372 bytes each: 2 fit in 4 KiB
    await broker.kick_batch(messages)
    assert sorted(await _drain(broker, 5)) == [f"run-1:leaf_{n:02d}" for n in range(5)]
    if harness.stub is not None:
        sizes = [len(c.params["Entries"]) for c in harness.stub.calls_to("send_message_batch")]
        assert sizes == [2, 2]  # and the fifth alone, as a plain send
        assert len(harness.stub.calls_to("send_message")) == 1


async def test_a_batch_with_a_message_over_the_limit_sends_nothing(harness) -> None:
    name = harness.queue_name()
    harness.create_queue(
        name, VisibilityTimeout=harness.visibility_timeout, MaximumMessageSize=1024
    )
    broker = await harness.broker(queue_name=name, dead_letters_enabled=False)
    messages = _step_messages(broker, 3) + _step_messages(broker, 1, payload="x" * 2000)
    with pytest.raises(MessageTooLargeError):
        await broker.kick_batch(messages)
    assert harness.counts(name) == (0, 0)


async def test_a_receive_takes_no_more_than_the_consumer_can_start(harness, kick) -> None:
    broker = await harness.broker(max_messages=10)
    assert isinstance(broker, SupportsReceiveLimit)
    startable = [3]
    broker.limit_receives(lambda: startable[0])
    for n in range(5):
        await kick(broker, "run-1", f"s{n}")
    messages = broker.listen()
    first = [await anext(messages) for _ in range(3)]
    startable[0] = 0  # no slot free but the one waiting: still one message, never none
    fourth = await anext(messages)
    for message in [*first, fourth]:
        await message.ack()
    await messages.aclose()
    assert harness.counts(broker.queue_info.name) == (1, 0)  # the fifth was never taken
    if harness.stub is not None:
        asked = [c.params["MaxNumberOfMessages"] for c in harness.stub.calls_to("receive_message")]
        assert asked[:2] == [3, 1]
