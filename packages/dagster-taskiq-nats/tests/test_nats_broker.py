"""The NATS JetStream broker on the real NATS: delivery, acks, ack wait, dead letters, recovery."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from nats.js.api import ConsumerConfig, StreamConfig
from structlog.testing import capture_logs
from taskiq.acks import AckableMessage

from dagster_taskiq.backends import available_backends, create_broker
from dagster_taskiq.brokers import DeliveryControl
from dagster_taskiq.messaging import SupportsDeadLetters, SupportsMessageControl
from dagster_taskiq_nats import (
    AckError,
    NatsConfigurationError,
    NatsJetStreamBroker,
    NatsUnavailableError,
)
from dagster_taskiq_testing.broker_tests import Listener
from dagster_taskiq_testing.servers import EndpointProxy


def control(broker: NatsJetStreamBroker, message: AckableMessage) -> DeliveryControl:
    found = broker.message_control(message)
    assert isinstance(found, DeliveryControl)
    return found


async def dead_letters_of(broker: NatsJetStreamBroker) -> list[Any]:
    """The broker's dead letters, once JetStream has published the advisory."""
    for _ in range(100):
        letters = await broker.receive_dead_letters()
        if letters:
            return letters
        await asyncio.sleep(0.1)
    return []


def test_the_entry_point_creates_the_broker_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_TASKIQ_NATS_CONSUMER", "from-env")
    assert "nats" in available_backends()
    broker = create_broker("nats", {"stream": "S1", "visibility_timeout": "7"})
    assert isinstance(broker, NatsJetStreamBroker)
    assert isinstance(broker, SupportsMessageControl)
    assert isinstance(broker, SupportsDeadLetters)
    assert (broker.settings.stream, broker.settings.consumer) == ("S1", "from-env")
    assert broker.settings.visibility_timeout == 7.0


async def test_send_receive_ack_removes_the_message(
    harness: Any, message: Callable[..., Any]
) -> None:
    broker = await harness.broker()
    await broker.kick(message("run-1:add", body=b'{"x": 1}'))
    messages = Listener(broker)
    received = await messages.receive()
    assert received.data == b'{"x": 1}'
    assert control(broker, received).receive_count == 1
    await received.ack()
    assert await harness.messages() == 0
    await received.ack()  # acking twice is harmless
    await messages.close()


async def test_an_identical_resend_is_dropped_and_a_new_enqueue_attempt_is_not(
    harness: Any, message: Callable[..., Any]
) -> None:
    broker = await harness.broker()
    await broker.kick(message("run-1:add"))
    await broker.kick(message("run-1:add"))  # same key, retry and attempt: a duplicate
    await broker.kick(message("run-1:add", enqueue_attempt=1))
    await broker.kick(message("run-1:add", retry_number=1))
    assert await harness.messages() == 3


async def test_an_unacked_message_is_redelivered_after_the_visibility_timeout(
    harness: Any, message: Callable[..., Any]
) -> None:
    """The worker that received it went silent (no in-progress ack, no ack): like a dead one."""
    first = await harness.broker(heartbeat_enabled=False)
    second = await harness.broker(heartbeat_enabled=False)
    await first.kick(message("run-1:add"))
    gone = Listener(first)
    taken = await gone.receive()
    await gone.close()
    again = Listener(second)
    redelivered = await again.receive()
    assert redelivered.data == taken.data
    assert control(second, redelivered).receive_count == 2
    await redelivered.ack()
    assert await harness.messages() == 0
    await again.close()


async def test_the_heartbeat_keeps_a_message_past_its_visibility_timeout(
    harness: Any, message: Callable[..., Any]
) -> None:
    holder = await harness.broker(heartbeat_interval=0.2)
    other = await harness.broker()
    await holder.kick(message("run-1:slow"))
    held = Listener(holder)
    taken = await held.receive()
    competing = Listener(other)
    assert await competing.nothing_for(3.0)  # three visibility timeouts
    await taken.ack()
    assert await harness.messages() == 0
    await held.close()
    await competing.close()


async def test_message_control_extends_and_releases(
    harness: Any, message: Callable[..., Any]
) -> None:
    holder = await harness.broker(heartbeat_enabled=False)
    other = await harness.broker(heartbeat_enabled=False)
    await holder.kick(message("run-1:add"))
    held = Listener(holder)
    taken = await held.receive()
    controlled = control(holder, taken)
    competing = Listener(other)
    for _ in range(4):  # the worker's heartbeat, taken over through the control
        await controlled.extend_lease(1.0)
        assert await competing.nothing_for(0.5)
    await controlled.release()
    released = await competing.receive()  # at once, not after the ack wait
    assert released.data == taken.data
    assert control(other, released).receive_count == 2
    with pytest.raises(AckError, match="released"):
        await taken.ack()
    assert holder.message_control(taken) is None
    await released.ack()
    await held.close()
    await competing.close()


async def test_a_message_delivered_max_deliveries_times_is_dead_lettered(
    harness: Any, message: Callable[..., Any]
) -> None:
    worker = await harness.broker(heartbeat_enabled=False, max_deliveries=2)
    executor = await harness.broker(max_deliveries=2)
    await executor.kick(message("run-1:poison", body=b"poison"))
    messages = Listener(worker)
    counts = []
    for _ in range(2):
        received = await messages.receive()
        counts.append(control(worker, received).receive_count)
    assert counts == [1, 2]
    assert await messages.nothing_for(2.5)  # not a third time
    letters = await dead_letters_of(executor)
    assert [(letter.body, letter.receive_count) for letter in letters] == [(b"poison", 2)]
    await letters[0].ack()
    assert await harness.messages() == 0  # the message itself is deleted with its letter
    assert await harness.messages(f"{harness.stream}_DLQ") == 0
    assert await executor.receive_dead_letters() == []
    await messages.close()


async def test_an_unacked_dead_letter_comes_back_after_the_visibility_timeout(
    harness: Any, message: Callable[..., Any]
) -> None:
    worker = await harness.broker(heartbeat_enabled=False, max_deliveries=1)
    first = await harness.broker(max_deliveries=1)
    second = await harness.broker(max_deliveries=1)
    await first.kick(message("run-1:poison"))
    messages = Listener(worker)
    await messages.receive()
    # JetStream gives up on a message (and announces it) when a consumer asks for the next one
    assert await messages.nothing_for(1.5)
    letters = await dead_letters_of(first)
    assert len(letters) == 1
    assert await second.receive_dead_letters() == []  # held by the first reader
    again = await dead_letters_of(second)
    assert [letter.message_id for letter in again] == [letters[0].message_id]
    await again[0].ack()
    await messages.close()


async def test_an_existing_stream_or_consumer_with_other_settings_is_refused(
    harness: Any,
) -> None:
    js = await harness.js()
    await js.add_stream(StreamConfig(name=harness.stream, subjects=[harness.subject]))
    with pytest.raises(NatsConfigurationError, match="retention"):
        await harness.broker()
    await js.delete_stream(harness.stream)
    await harness.broker(visibility_timeout=1.0)
    with pytest.raises(NatsConfigurationError) as raised:
        await harness.broker(visibility_timeout=2.0, max_deliveries=3)
    assert "ack_wait is 1.0 s, want 2.0 s (setting visibility_timeout)" in str(raised.value)
    assert "max_deliver is 5, want 3" in str(raised.value)
    info = await js.consumer_info(harness.stream, "dagster-taskiq-workers")
    assert isinstance(info.config, ConsumerConfig)
    assert info.config.ack_wait == 1.0  # left as it was


async def test_startup_retries_then_names_the_servers(harness: Any, debug_logs: None) -> None:
    broker = NatsJetStreamBroker(
        harness.settings(
            servers="nats://user:secret@127.0.0.1:1",
            retry_attempts=3,
            retry_initial_delay=0.05,
            retry_max_delay=0.1,
            connect_timeout=1,
        )
    )
    with capture_logs() as logs, pytest.raises(NatsUnavailableError) as raised:
        await broker.startup()
    text = str(raised.value)
    assert "nats://***@127.0.0.1:1" in text
    assert "secret" not in text
    assert "3 attempt(s)" in text
    assert [log["attempt"] for log in logs if log["event"] == "nats_retry"] == [1, 2]
    with contextlib.suppress(Exception):
        await broker.shutdown()


async def test_a_receive_rides_out_a_lost_connection(
    harness: Any, message: Callable[..., Any], proxy: EndpointProxy, debug_logs: None
) -> None:
    sender = await harness.broker()
    through_proxy = await harness.broker(
        servers=f"nats://127.0.0.1:{proxy.port}", retry_attempts=30, retry_timeout=20
    )
    messages = Listener(through_proxy)
    with capture_logs() as logs:
        assert await messages.nothing_for(0.3)
        proxy.kill()
        await asyncio.sleep(1.0)
        await sender.kick(message("run-1:add"))
        proxy.start()
        received = await messages.receive()
    assert received.data
    events = {log["event"] for log in logs}
    assert {"nats_disconnected", "nats_reconnected"} <= events
    await received.ack()
    assert await harness.messages() == 0
    await messages.close()
