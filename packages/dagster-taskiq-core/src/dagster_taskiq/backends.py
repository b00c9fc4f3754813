"""Broker backends, found by name through the ``dagster_taskiq.brokers`` entry-point group.

A backend package registers a factory ``create_broker(settings: Mapping[str, Any] | None)
-> taskiq.AsyncBroker``; ``settings`` are the backend's own settings (e.g. ``SqsSettings``
fields), the rest comes from its environment variables. Core knows no backend by code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from taskiq import AsyncBroker

from dagster_taskiq.brokers import BrokerSettings, QueueSet, WeightedQueue
from dagster_taskiq.errors import BackendNotFoundError, DagsterTaskIQError

__all__ = [
    "BROKER_ENTRY_POINT_GROUP",
    "BrokerFactory",
    "available_backends",
    "create_broker",
    "create_listener",
    "load_broker_factory",
]

BROKER_ENTRY_POINT_GROUP = "dagster_taskiq.brokers"

BrokerFactory = Callable[[Mapping[str, Any] | None], AsyncBroker]

# Where the backends we know of live, for the error message when one is missing.
_PACKAGES = {
    "sqs": "dagster-taskiq-sqs",
    "memory": "dagster-taskiq-testing",
    "redis": "dagster-taskiq-redis",
    "nats": "dagster-taskiq-nats",
    "rabbitmq": "dagster-taskiq-rabbitmq",
}


def available_backends() -> list[str]:
    """Names of the installed backends."""
    return sorted({ep.name for ep in entry_points(group=BROKER_ENTRY_POINT_GROUP)})


def load_broker_factory(name: str, installed: Iterable[EntryPoint] | None = None) -> BrokerFactory:
    """The factory registered for backend ``name`` (among ``installed``: default, the
    ``dagster_taskiq.brokers`` entry points of this environment)."""
    if installed is None:
        installed = entry_points(group=BROKER_ENTRY_POINT_GROUP)
    installed = list(installed)
    for ep in installed:
        if ep.name == name:
            factory = ep.load()
            if not callable(factory):
                raise BackendNotFoundError(
                    f"entry point {ep.value!r} of broker backend {name!r} is not callable"
                )
            return factory  # type: ignore[no-any-return]
    package = _PACKAGES.get(name)
    hint = (
        f"install it with `uv add {package}`"
        if package
        else "no known package provides it; installed backends: "
        f"{sorted({ep.name for ep in installed}) or 'none'}"
    )
    raise BackendNotFoundError(f"broker backend {name!r} is not installed: {hint}")


def create_broker(name: str, settings: Mapping[str, Any] | None = None) -> AsyncBroker:
    """Create the broker of backend ``name`` with its ``settings``."""
    broker = load_broker_factory(name)(settings)
    if not isinstance(broker, AsyncBroker):
        raise BackendNotFoundError(
            f"broker backend {name!r} returned {type(broker).__name__}, not a taskiq AsyncBroker"
        )
    return broker


def create_listener(
    name: str, settings: Mapping[str, Any] | None, queues: Sequence[WeightedQueue] = ()
) -> AsyncBroker:
    """The broker a worker of backend ``name`` listens with: on the queue its ``settings`` name,
    or on each of ``queues`` (``--queue``), read together by weight (a ``QueueSet``)."""
    if not queues:
        return create_broker(name, settings)
    WeightedQueue.parse_all([f"{q.name}:{q.weight}" for q in queues])  # each named once
    template = getattr(create_broker(name, settings), "settings", None)
    if not isinstance(template, BrokerSettings):
        raise DagsterTaskIQError(
            f"broker backend {name!r} has no dagster-taskiq settings: it cannot read several "
            "queues (leave out --queue and name its queue in its settings)"
        )
    brokers = [
        (create_broker(name, {**(settings or {}), **template.for_queue(q.name)}), q.weight)
        for q in queues
    ]
    if len(brokers) == 1:
        return brokers[0][0]
    return QueueSet(brokers)
