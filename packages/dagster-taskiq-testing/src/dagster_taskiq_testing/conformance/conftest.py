"""``subject``: the broker under test, once per backend of :data:`ADAPTERS`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dagster_taskiq_testing.conformance._adapters import ADAPTERS, BrokerUnderTest


@pytest.fixture(params=sorted(ADAPTERS))
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[BrokerUnderTest]:
    adapter = ADAPTERS[request.param](request.getfixturevalue)
    adapter.require()
    try:
        yield adapter
    finally:
        await adapter.close()
