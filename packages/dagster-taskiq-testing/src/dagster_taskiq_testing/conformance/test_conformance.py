"""What every broker backend guarantees the worker and the executor (``docs/backends.md``).

Each test runs once per backend (``subject``, see ``conftest.py``). Waits are generous and
absences are checked over a bounded time; nothing asserts how fast a backend is.
"""

from __future__ import annotations

import asyncio

import pytest
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage

from dagster_taskiq.errors import AckError
from dagster_taskiq.messaging import (
    LABEL_QUEUE,
    SupportsDeadLetters,
    SupportsMessageControl,
    SupportsReceiveLimit,
)
from dagster_taskiq_testing.broker_helpers import (
    Listener,
    assert_one_setting_problem,
    control_of,
    dead_letters,
    step_message,
)
from dagster_taskiq_testing.conformance._adapters import BrokerUnderTest


def message(key: str = "run-1:a", body: bytes = b"", *, queue: str | None = None) -> BrokerMessage:
    sent = step_message(key, body=body or f'{{"step": "{key}"}}'.encode())
    if queue is not None:
        sent.labels[LABEL_QUEUE] = queue
    return sent


def with_attempt(key: str, body: bytes, *, retry: int = 0, attempt: int = 0) -> BrokerMessage:
    return step_message(key, retry_number=retry, enqueue_attempt=attempt, body=body)


async def ack(received: AckableMessage) -> None:
    acked = received.ack()
    if acked is not None:
        await acked


async def redelivered(
    subject: BrokerUnderTest, broker: object, messages: Listener, original: AckableMessage
) -> None:
    """``original`` comes to ``broker`` through ``messages`` again, a second delivery; once
    acked, it is gone."""
    again = await messages.receive()
    assert again.data == original.data
    assert control_of(broker, again).receive_count == 2
    await ack(again)
    assert await subject.holds(0)


async def test_send_receive_ack_and_the_message_is_gone(subject: BrokerUnderTest) -> None:
    broker = await subject.broker()
    await broker.kick(message(body=b'{"x": 1}'))
    messages = Listener(broker)
    received = await messages.receive()
    assert received.data == b'{"x": 1}'
    assert control_of(broker, received).receive_count == 1
    assert await subject.holds(1)
    await ack(received)
    assert await subject.holds(0)
    await ack(received)  # acking twice is harmless
    assert isinstance(broker, SupportsMessageControl)
    assert broker.message_control(received) is None
    assert await messages.nothing_for(2.5)  # past the visibility timeout: never again
    await messages.close()


async def test_one_message_per_request(subject: BrokerUnderTest) -> None:
    first, second = await subject.broker(heartbeat=True), await subject.broker(heartbeat=True)
    for broker in (first, second):
        if isinstance(broker, SupportsReceiveLimit):
            broker.limit_receives(lambda: 1)  # as the worker does with one free slot
    await first.kick(message("run-1:a"))
    await first.kick(message("run-1:b"))
    held, other = Listener(first), Listener(second)
    taken = await held.receive()
    given = await other.receive()  # the first consumer took one, not both
    assert {taken.data, given.data} == {b'{"step": "run-1:a"}', b'{"step": "run-1:b"}'}
    for received in (taken, given):
        await ack(received)
    await held.close()
    await other.close()


async def test_release_redelivers_and_a_released_message_refuses_ack_and_extension(
    subject: BrokerUnderTest,
) -> None:
    # A lease longer than the test's patience: the message can come back only by its release.
    holder = await subject.broker(visibility_timeout=30.0)
    other = await subject.broker(visibility_timeout=30.0)
    await holder.kick(message())
    held = Listener(holder)
    received = await held.receive()
    controlled = control_of(holder, received)
    await controlled.release()
    with pytest.raises(AckError, match="released"):
        await ack(received)
    with pytest.raises(AckError, match="released"):
        await controlled.extend_lease(1.0)
    assert isinstance(holder, SupportsMessageControl)
    assert holder.message_control(received) is None
    competing = Listener(other)
    await redelivered(subject, other, competing, received)  # to another consumer, at once
    await held.close()
    await competing.close()


async def test_an_unacked_message_goes_to_another_consumer_after_the_visibility_timeout(
    subject: BrokerUnderTest,
) -> None:
    if not subject.redelivers_unacked:
        pytest.skip(f"{subject.name}: the lease is the consumer's connection (see its adapter)")
    first, second = await subject.broker(), await subject.broker()
    await first.kick(message())
    taken = await Listener(first).receive()
    assert control_of(first, taken).receive_count == 1
    other = Listener(second)
    await redelivered(subject, second, other, taken)
    await other.close()


async def test_extending_the_lease_keeps_a_message_until_it_stops(
    subject: BrokerUnderTest,
) -> None:
    first = await subject.broker(visibility_timeout=2.0)
    second = await subject.broker(visibility_timeout=2.0)
    await first.kick(message())
    taken = await Listener(first).receive()
    controlled, other = control_of(first, taken), Listener(second)
    for _ in range(6):  # 3 s: past the 2 s visibility timeout
        await controlled.extend_lease(2.0)
        assert await other.nothing_for(0.5)
    if subject.redelivers_unacked:
        again = await other.receive()  # extensions stopped: the lease runs out
        assert again.data == taken.data
        await ack(again)
    else:
        await ack(taken)
    await other.close()


async def test_the_brokers_own_heartbeat_keeps_a_message(subject: BrokerUnderTest) -> None:
    first = await subject.broker(visibility_timeout=2.0, heartbeat=True)
    second = await subject.broker(visibility_timeout=2.0, heartbeat=True)
    await first.kick(message())
    taken = await Listener(first).receive()
    other = Listener(second)
    assert await other.nothing_for(5.0)  # two and a half visibility timeouts
    await ack(taken)
    assert await subject.holds(0)
    assert await other.nothing_for(1.0)
    await other.close()


async def _no_dead_letters(broker: object) -> bool:
    assert isinstance(broker, SupportsDeadLetters)
    return await broker.receive_dead_letters() == []


async def test_a_message_delivered_max_deliveries_times_becomes_a_dead_letter(
    subject: BrokerUnderTest,
) -> None:
    worker = await subject.broker(max_deliveries=2)
    executor = await subject.broker(max_deliveries=2)
    await executor.kick(message("run-1:poison", body=b'{"poison": 1}'))
    messages = Listener(worker)
    for expected in (1, 2):
        received = await messages.receive()
        assert control_of(worker, received).receive_count == expected
        if not subject.redelivers_unacked:
            await control_of(worker, received).release()
    assert await messages.nothing_for(2.5)  # no third delivery
    [letter] = await dead_letters(executor)
    assert letter.body == b'{"poison": 1}'
    assert letter.receive_count == 2
    assert await subject.holds(1, dead=True)
    assert await subject.holds(0 if subject.dead_letter_leaves_the_queue else 1)
    await letter.ack()
    assert await subject.holds(0)
    assert await subject.holds(0, dead=True)
    assert await _no_dead_letters(executor)
    await asyncio.sleep(2.5)  # past the visibility timeout: an acked letter does not come back
    assert await _no_dead_letters(executor)
    await messages.close()


async def test_an_unacked_dead_letter_comes_back(subject: BrokerUnderTest) -> None:
    worker = await subject.broker(max_deliveries=1)
    first, second = await subject.broker(max_deliveries=1), await subject.broker(max_deliveries=1)
    await first.kick(message("run-1:poison"))
    messages = Listener(worker)
    received = await messages.receive()
    if not subject.redelivers_unacked:
        await control_of(worker, received).release()
    assert await messages.nothing_for(2.5)
    [letter] = await dead_letters(first)
    assert await _no_dead_letters(second)  # held by the first reader
    reader = second if subject.dead_letters_return_by_themselves else first
    [again] = await dead_letters(reader)  # not acked: handed out again after its timeout
    assert (again.body, again.message_id) == (letter.body, letter.message_id)
    await again.ack()
    await messages.close()


async def test_an_identical_resend_is_dropped_and_new_attempts_are_not(
    subject: BrokerUnderTest,
) -> None:
    broker = await subject.broker()
    await broker.kick(with_attempt("run-1:a", b'{"n": 1}'))
    await broker.kick(with_attempt("run-1:a", b'{"n": 1}'))  # same key, retry and attempt
    await broker.kick(with_attempt("run-1:a", b'{"n": 2}', attempt=1))
    await broker.kick(with_attempt("run-1:a", b'{"n": 3}', retry=1))
    messages = Listener(broker)
    bodies = []
    for _ in range(3):
        received = await messages.receive()
        bodies.append(received.data)
        await ack(received)
    assert sorted(bodies) == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert await subject.holds(0)
    assert await messages.nothing_for(1.0)
    await messages.close()


async def test_a_message_goes_to_the_queue_its_label_names(subject: BrokerUnderTest) -> None:
    main = await subject.broker(queue="main")
    other = await subject.broker(queue="other")
    await main.kick(message("run-1:routed", queue=subject.route("other")))
    on_main, on_other = Listener(main), Listener(other)
    received = await on_other.receive()
    assert received.data == b'{"step": "run-1:routed"}'
    await ack(received)
    assert await on_main.nothing_for(1.0)
    await on_main.close()
    await on_other.close()


# --- the settings every backend shares (dagster_taskiq.brokers.BrokerSettings) ---------------

SHARED_PROBLEMS = [
    ({"visibility_timeout": 0}, "visibility_timeout", None),  # the adapter's smallest_visibility
    ({"max_deliveries": 0}, "max_deliveries", "greater than or equal to 1"),
    (
        {"visibility_timeout": 3, "heartbeat_interval": 3},
        "heartbeat_interval",
        "shorter than visibility_timeout",
    ),
    (
        {"retry_initial_delay": 2, "retry_max_delay": 1},
        "retry_max_delay",
        "at least retry_initial_delay",
    ),
    ({"no_such_setting": 1}, "no_such_setting", "Extra inputs"),
]


@pytest.mark.parametrize(("values", "field", "fragment"), SHARED_PROBLEMS)
def test_a_shared_settings_problem_names_the_field_and_its_variable(
    subject: BrokerUnderTest, values: dict[str, object], field: str, fragment: str | None
) -> None:
    settings = subject.settings_class()
    known = field in settings.model_fields
    assert_one_setting_problem(
        settings,
        settings.settings_error,
        values,
        field=field,
        env_var=settings.env_var(field) if known else "no such setting",
        fragment=fragment or subject.smallest_visibility,
    )


def test_the_shared_settings_come_from_the_environment(
    subject: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = subject.settings_class()
    monkeypatch.setenv(settings.env_var("max_deliveries"), "3")
    monkeypatch.setenv(settings.env_var("dead_letters_enabled"), "false")
    read = settings()
    assert (read.max_deliveries, read.dead_letter_queue) == (3, None)
    aliased = settings(taskiq_visibility_timeout=60)  # the one alias of visibility_timeout
    assert (aliased.visibility_timeout, aliased.heartbeat_every) == (60, 20)
    assert settings().delivery_policy().heartbeat_every == 100


def test_a_bad_environment_value_names_the_variable(
    subject: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = subject.settings_class()
    variable = settings.env_var("retry_timeout")
    monkeypatch.setenv(variable, "soon")
    with pytest.raises(settings.settings_error, match=variable):
        settings()
