"""``RabbitMqSettings``: where RabbitMQ is and how the broker uses its queues, validated at
construction.

Values come from the keyword arguments first, then from the environment (prefix
``DAGSTER_TASKIQ_RABBITMQ_``, e.g. ``DAGSTER_TASKIQ_RABBITMQ_URL``). Nothing is read at import
time: only when ``RabbitMqSettings(...)`` is called. Invalid values raise
:class:`~dagster_taskiq_rabbitmq.errors.RabbitMqSettingsError` naming each setting and its
variable. The fields every backend shares (visibility timeout, dead letters, heartbeat, retries)
and their checks are core's :class:`~dagster_taskiq.brokers.BrokerSettings`.

``visibility_timeout`` is, on RabbitMQ, the AMQP heartbeat timeout of the broker's connections
(whole seconds, rounded up): RabbitMQ has no per-message visibility; it requeues what a consumer
holds when that consumer's connection closes or falls silent (``docs/backends.md``).
"""

from __future__ import annotations

import math
import urllib.parse
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from dagster_taskiq.brokers import BrokerSettings, redact_url, server_url_problem
from dagster_taskiq.errors import SettingProblem
from dagster_taskiq.retrying import RetryBudget
from dagster_taskiq_rabbitmq.errors import RabbitMqSettingsError

__all__ = ["ENV_PREFIX", "RabbitMqSettings", "RetryBudget", "dead_letter_queue_name"]

ENV_PREFIX = "DAGSTER_TASKIQ_RABBITMQ_"
DLQ_SUFFIX = "-dlq"
_SCHEMES = frozenset({"amqp", "amqps"})
_MAX_NAME_BYTES = 255  # AMQP 0-9-1 short string


def dead_letter_queue_name(queue: str) -> str:
    """``steps`` -> ``steps-dlq``: the dead-letter queue of a queue without an explicit one."""
    return queue + DLQ_SUFFIX


class RabbitMqSettings(BrokerSettings):
    """Settings of :class:`~dagster_taskiq_rabbitmq.RabbitMqBroker`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)
    settings_error = RabbitMqSettingsError
    url_fields = frozenset({"url"})

    # --- where -----------------------------------------------------------------------------
    url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        description="AMQP URL (amqp:// or amqps://) with user, password and virtual host.",
    )
    queue_name: str = Field(
        "dagster-taskiq", description="The quorum queue steps are sent to and received from."
    )
    dead_letter_queue_name: str | None = Field(
        None, description="Dead-letter queue of queue_name; default '<queue_name>-dlq'."
    )

    # --- delivery --------------------------------------------------------------------------
    wait_time_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Longest wait of one receive for a message; a receive that waited this "
        "long without one starts again (and notices a lost connection).",
    )
    deduplication_window: float = Field(
        300.0,
        ge=0,
        description="Seconds an identical resend by the same broker (same deduplication id) is "
        "dropped before it is published; 0 turns it off. RabbitMQ itself deduplicates nothing.",
    )

    # --- resilience ------------------------------------------------------------------------
    request_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds to wait for RabbitMQ's answer to a declare, publish confirm, "
        "consume or settle.",
    )

    def __init__(self, **values: Any) -> None:  # keyword arguments or the environment
        super().__init__(**values)

    # --- derived values --------------------------------------------------------------------

    @property
    def queue(self) -> str:
        return self.queue_name

    @property
    def dead_letter_queue(self) -> str | None:
        """The dead-letter queue, or None when ``dead_letters_enabled`` is false."""
        return self.dead_letter_queue_of(self.queue_name)

    def dead_letter_queue_of(self, queue: str) -> str | None:
        """Where ``queue``'s dead letters go: ``dead_letter_queue_name`` for the broker's own
        queue, ``<queue>-dlq`` for a queue a message's ``queue`` label names (so every broker
        declares a queue with the same arguments, whatever its own settings)."""
        if not self.dead_letters_enabled:
            return None
        if queue == self.queue_name and self.dead_letter_queue_name:
            return self.dead_letter_queue_name
        return dead_letter_queue_name(queue)

    @property
    def heartbeat_seconds(self) -> int:
        """The AMQP heartbeat timeout negotiated for the broker's connections: the visibility
        timeout in whole seconds (rounded up; AMQP carries whole seconds)."""
        return max(1, math.ceil(self.visibility_timeout))

    @property
    def connection_url(self) -> str:
        """``url`` with the heartbeat timeout in its query (aiormq reads it there)."""
        parts = urllib.parse.urlsplit(self.url)
        query = [
            (key, value) for key, value in urllib.parse.parse_qsl(parts.query) if key != "heartbeat"
        ]
        query.append(("heartbeat", str(self.heartbeat_seconds)))
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    @property
    def redacted_url(self) -> str:
        """The URL without its password (for logs and errors)."""
        return redact_url(self.url)

    # --- validation ------------------------------------------------------------------------

    def _transport_problems(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []

        def problem(field: str, message: str) -> None:
            problems.append(self.problem(field, message))

        wrong = server_url_problem(self.url, _SCHEMES, "an amqp:// or amqps://")
        if wrong:
            problem("url", wrong)
        for field in ("queue_name", "dead_letter_queue_name"):
            value = getattr(self, field)
            if value is None:
                continue
            if not value.strip() or len(value.encode()) > _MAX_NAME_BYTES:
                problem(field, f"1-255 bytes, not only whitespace, got {value!r}")
            elif value.startswith("amq."):
                problem(field, f"names starting with 'amq.' are RabbitMQ's own, got {value!r}")
        if self.dead_letter_queue == self.queue_name:
            problem(
                "dead_letter_queue_name",
                f"must differ from the queue itself ({self.queue_name!r})",
            )
        return problems
