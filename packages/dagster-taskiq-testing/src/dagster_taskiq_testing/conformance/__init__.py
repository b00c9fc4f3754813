"""The broker conformance suite: the same tests on every broker backend.

``test_conformance.py`` holds the tests; each takes ``subject``, a :class:`BrokerUnderTest`
that starts brokers of one backend on queues of its own (``conftest.py`` parametrises it over
:data:`ADAPTERS`: the memory stub, SQS on moto's server, Redis, NATS, RabbitMQ). What a backend
honestly does differently is a class attribute of its adapter, with the reason beside it.

A new backend adds one adapter to ``_adapters.py`` (a subclass of :class:`BrokerUnderTest` that
turns the suite's options into its settings) and its name to :data:`ADAPTERS`; nothing else.
Run it: ``uv run pytest packages/dagster-taskiq-testing/src/dagster_taskiq_testing/conformance``
(``-k redis`` for one backend). The services must run (Redis 6379, NATS 4222, RabbitMQ 5672,
with ``rabbitmqctl`` on PATH: see :mod:`dagster_taskiq_testing.services`); a missing one skips
its backend, or fails with ``DAGSTER_TASKIQ_REQUIRE_SERVICES=1``.
"""

from dagster_taskiq_testing.conformance._adapters import ADAPTERS, BrokerUnderTest

__all__ = ["ADAPTERS", "BrokerUnderTest"]
