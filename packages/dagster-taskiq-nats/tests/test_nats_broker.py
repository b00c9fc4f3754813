"""The broker's own tests on the real service: what only this backend does (the behaviour every
backend shares is the conformance suite's, in dagster_taskiq_testing.conformance)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.js.api import ConsumerConfig, StreamConfig
from structlog.testing import capture_logs

from dagster_taskiq_nats import (
    NatsConfigurationError,
)
from dagster_taskiq_testing.broker_helpers import Listener, step_message
from dagster_taskiq_testing.servers import EndpointProxy


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


async def test_a_receive_rides_out_a_lost_connection(
    harness: Any, proxy: EndpointProxy, debug_logs: None
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
        await sender.kick(step_message("run-1:add"))
        proxy.start()
        received = await messages.receive()
    assert received.data
    events = {log["event"] for log in logs}
    assert {"nats_disconnected", "nats_reconnected"} <= events
    await received.ack()
    assert await harness.messages() == 0
    await messages.close()
