"""Fixtures of the NATS JetStream broker's tests, on the real NATS (JetStream) at 127.0.0.1:4222.

Every test gets its own stream, subject and dead-letter stream (deleted afterwards). Without
NATS the tests skip, or fail when ``DAGSTER_TASKIQ_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import nats
from nats.js.errors import NotFoundError

from dagster_taskiq_nats import NatsJetStreamBroker, NatsSettings
from dagster_taskiq_testing.broker_helpers import StartedBrokers, harness_fixture, proxy_fixture
from dagster_taskiq_testing.services import NATS_URL, require_nats


class NatsHarness(StartedBrokers):
    """Brokers on a unique stream of the real NATS, and a client to inspect it."""

    def __init__(self) -> None:
        super().__init__()
        name = uuid.uuid4().hex[:12]
        self.stream = f"TEST_{name}"
        self.subject = f"test.{name}.steps"
        self._client: Any = None

    def settings(self, **overrides: Any) -> NatsSettings:
        values: dict[str, Any] = {
            "servers": NATS_URL,
            "stream": self.stream,
            "subject": self.subject,
            "storage": "memory",
            "visibility_timeout": 1.0,
            "fetch_timeout": 0.3,
            "retry_attempts": 3,
            "retry_initial_delay": 0.05,
            "retry_max_delay": 0.2,
            "retry_timeout": 5.0,
        }
        values.update(overrides)
        return NatsSettings(**values)

    async def broker(self, **overrides: Any) -> NatsJetStreamBroker:
        """A started broker (shut down at the end of the test)."""
        return await self.start(NatsJetStreamBroker(self.settings(**overrides)))

    async def js(self) -> Any:
        if self._client is None:
            self._client = await nats.connect(NATS_URL)
        return self._client.jetstream()

    async def messages(self, stream: str | None = None) -> int:
        info = await (await self.js()).stream_info(stream or self.stream)
        return int(info.state.messages)

    async def clean(self) -> None:
        js = await self.js()
        for stream in (self.stream, f"{self.stream}_DLQ"):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
        await self._client.close()


harness = harness_fixture(NatsHarness, require_nats)
proxy = proxy_fixture(NATS_URL)
