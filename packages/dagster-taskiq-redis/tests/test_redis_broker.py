"""The broker's own tests on the real service: what only this backend does (the behaviour every
backend shares is the conformance suite's, in dagster_taskiq_testing.conformance)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from dagster_taskiq_redis import (
    AckError,
)
from dagster_taskiq_testing.broker_helpers import (
    PATIENCE,
    Listener,
    control_of,
    dead_letters,
    step_message,
)
from dagster_taskiq_testing.servers import EndpointProxy


async def test_deduplication_can_be_turned_off(harness: Any) -> None:
    broker = await harness.broker(deduplication_window=0)
    await broker.kick(step_message("run-1:add"))
    await broker.kick(step_message("run-1:add"))
    assert harness.length() == 2


async def test_an_unacked_message_is_redelivered_after_the_visibility_timeout(harness: Any) -> None:
    """The consumer that received it went silent (no heartbeat, no ack): like a dead worker."""
    first = await harness.broker(heartbeat_enabled=False)
    second = await harness.broker(heartbeat_enabled=False)
    await first.kick(step_message("run-1:add"))
    gone = Listener(first)
    taken = await gone.receive()
    again = Listener(second)
    redelivered = await again.receive()
    assert redelivered.data == taken.data
    assert control_of(second, redelivered).receive_count == 2
    await redelivered.ack()
    assert (harness.pending(), harness.length()) == (0, 0)
    with pytest.raises(AckError, match="no longer pending"):
        await control_of(first, taken).extend_lease(1.0)  # the first consumer lost it
    await gone.close()
    await again.close()


async def test_dead_letters_move_even_when_no_worker_listens(harness: Any) -> None:
    """The executor's own look at the dead letters moves an entry whose last consumer died."""
    worker = await harness.broker(heartbeat_enabled=False, max_deliveries=1)
    executor = await harness.broker(max_deliveries=1)
    await executor.kick(step_message("run-1:poison"))
    messages = Listener(worker)
    await messages.receive()
    await messages.close()  # the worker is gone; its entry stays pending
    letters = await dead_letters(executor)
    assert [letter.receive_count for letter in letters] == [1]
    await letters[0].ack()


async def test_a_restarted_consumer_of_the_same_name_takes_its_entry_back_at_once(
    harness: Any,
) -> None:
    first = await harness.broker(consumer_name="worker-a", visibility_timeout=300)
    await first.kick(step_message("run-1:add"))
    messages = Listener(first)
    await messages.receive()
    await first.shutdown()  # died holding it (shutdown keeps a consumer that holds entries)
    harness.brokers.remove(first)
    restarted = await harness.broker(consumer_name="worker-a", visibility_timeout=300)
    again = Listener(restarted)
    received = await again.receive()
    await received.ack()
    assert (harness.pending(), harness.length()) == (0, 0)
    await again.close()


async def test_closing_listen_releases_nothing_it_yielded_and_shutdown_leaves_the_group(
    harness: Any,
) -> None:
    broker = await harness.broker()
    await broker.kick(step_message("run-1:add"))
    messages = Listener(broker)
    received = await messages.receive()
    await messages.close()
    assert harness.pending() == 1  # still held: the consumer may ack it after closing listen
    await received.ack()
    await broker.shutdown()
    harness.brokers.remove(broker)
    consumers: Any = harness.client.xinfo_consumers(harness.stream, "dagster-taskiq")
    assert consumers == []


async def test_a_receive_rides_out_a_lost_connection(
    harness: Any, proxy: EndpointProxy, debug_logs: None
) -> None:
    sender = await harness.broker()
    through_proxy = await harness.broker(
        url=f"redis://127.0.0.1:{proxy.port}", retry_attempts=20, retry_timeout=20
    )
    messages = Listener(through_proxy)
    with capture_logs() as logs:
        waiting = asyncio.ensure_future(messages.receive())
        await asyncio.sleep(0.3)
        proxy.kill()
        await asyncio.sleep(0.5)
        await sender.kick(step_message("run-1:add"))
        proxy.start()
        received = await asyncio.wait_for(waiting, PATIENCE)
    assert received.data
    assert any(log["event"] == "redis_retry" for log in logs)
    await received.ack()
    assert (harness.pending(), harness.length()) == (0, 0)
    await messages.close()
