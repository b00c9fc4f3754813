"""The base of every broker backend: deliveries, their states, leases, heartbeats, dead letters.

A backend (the sqs, redis, nats and rabbitmq packages) subclasses
:class:`BrokerBase` and its TaskIQ library's broker and writes only its transport; the backends
are found by name through the ``dagster_taskiq.brokers`` entry points
(:mod:`dagster_taskiq.backends`).
"""

from dagster_taskiq.brokers._base import BrokerBase, DeliveryPolicy
from dagster_taskiq.brokers._delivery import Delivery, DeliveryControl, DeliveryState
from dagster_taskiq.brokers._heartbeat import heartbeat_loop, start_heartbeat, stop_heartbeat
from dagster_taskiq.brokers._queue_set import QueueSet, WeightedQueue
from dagster_taskiq.brokers._settings import (
    VISIBILITY_TIMEOUT_ALIAS,
    BrokerSettings,
    redact_url,
    server_url_problem,
)

__all__ = [
    "VISIBILITY_TIMEOUT_ALIAS",
    "BrokerBase",
    "BrokerSettings",
    "Delivery",
    "DeliveryControl",
    "DeliveryPolicy",
    "DeliveryState",
    "QueueSet",
    "WeightedQueue",
    "heartbeat_loop",
    "redact_url",
    "server_url_problem",
    "start_heartbeat",
    "stop_heartbeat",
]
