"""How every backend is found and started: by name through its entry point, with its settings
from the arguments and the environment; a server that is not there is retried within the budget,
then named in the error, its password masked."""

from __future__ import annotations

import importlib

import pytest

from dagster_taskiq.backends import available_backends, create_broker
from dagster_taskiq.brokers import BrokerBase
from dagster_taskiq.errors import BrokerUnavailableError
from dagster_taskiq.messaging import SupportsDeadLetters, SupportsMessageControl
from dagster_taskiq_testing.broker_helpers import assert_startup_gives_up
from dagster_taskiq_testing.conformance._adapters import BrokerOptions, BrokerUnderTest


def test_the_backend_is_found_by_name_and_takes_its_settings_and_environment(
    subject: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    field, variable, value = subject.from_environment
    monkeypatch.setenv(variable, value)
    assert subject.name in available_backends()
    broker: object = create_broker(
        subject.name, {**subject.transport("main"), "visibility_timeout": "7"}
    )
    assert isinstance(broker, SupportsMessageControl)
    assert isinstance(broker, SupportsDeadLetters)
    assert isinstance(
        broker, getattr(importlib.import_module(subject.package), subject.broker_name)
    )
    assert isinstance(broker, BrokerBase)
    assert broker.settings.queue == subject.queue_name("main")
    assert getattr(broker.settings, field) == value
    assert broker.settings.visibility_timeout == 7.0


async def test_startup_retries_then_names_the_server(subject: BrokerUnderTest) -> None:
    if subject.unreachable is None:
        pytest.skip(f"{subject.name}: no server of its own to miss (see the adapter)")
    overrides, shown = subject.unreachable
    settings = subject.settings("main", BrokerOptions()).model_copy(update=overrides)
    broker = subject.make(settings)
    assert isinstance(broker, BrokerBase)
    assert issubclass(broker.unavailable_error, BrokerUnavailableError)
    await assert_startup_gives_up(
        broker,
        broker.unavailable_error,
        shown=shown,
        retry_event=f"{broker.event_prefix}_retry",
    )
