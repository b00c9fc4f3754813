"""``NatsSettings``: where the stream is and how the broker uses it, validated at construction.

Values come from the keyword arguments first, then from the environment (prefix
``DAGSTER_TASKIQ_NATS_``, e.g. ``DAGSTER_TASKIQ_NATS_SERVERS``). Nothing is read at import time:
only when ``NatsSettings(...)`` is called. Invalid values raise
:class:`~dagster_taskiq_nats.errors.NatsSettingsError` naming each setting and its variable.
The fields every backend shares (visibility timeout, dead letters, heartbeat, retries) and their
checks are core's :class:`~dagster_taskiq.brokers.BrokerSettings`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from dagster_taskiq.brokers import BrokerSettings, redact_url, server_url_problem
from dagster_taskiq.errors import SettingProblem
from dagster_taskiq.retrying import RetryBudget
from dagster_taskiq_nats.errors import NatsSettingsError

__all__ = ["ENV_PREFIX", "NatsSettings", "RetryBudget", "Storage"]

ENV_PREFIX = "DAGSTER_TASKIQ_NATS_"
DLQ_SUFFIX = "_DLQ"
_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
# Stream and consumer names: no whitespace, '.', '*', '>' or path separators (NATS ADR-6).
_NAME = re.compile(r"^[^\s.*>/\\]{1,64}$")
_SUBJECT = re.compile(r"^[^\s*>]+(\.[^\s*>]+)*$")


class Storage(enum.StrEnum):
    """Where JetStream keeps the stream."""

    FILE = "file"
    MEMORY = "memory"


class NatsSettings(BrokerSettings):
    """Settings of :class:`~dagster_taskiq_nats.NatsJetStreamBroker`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)
    settings_error = NatsSettingsError
    url_fields = frozenset({"servers"})
    renamed: ClassVar[Mapping[str, str]] = {"duplicate_window": "deduplication_window"}
    queue_field: ClassVar[str] = "subject"

    # --- where -----------------------------------------------------------------------------
    servers: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server URL(s), comma-separated (nats://, tls://, ws://, wss://).",
    )
    stream: str = Field("DAGSTER_TASKIQ", description="The JetStream stream of the steps.")
    subject: str = Field("dagster-taskiq.steps", description="The subject steps are sent to.")
    consumer: str = Field(
        "dagster-taskiq-workers", description="The durable pull consumer the workers share."
    )
    storage: Storage = Field(Storage.FILE, description="Stream storage: 'file' or 'memory'.")

    # --- delivery --------------------------------------------------------------------------
    fetch_timeout: float = Field(
        5.0, gt=0, le=60, description="Longest wait per pull request (fetch of one message)."
    )
    dead_letter_stream: str | None = Field(
        None, description="Dead-letter (advisory) stream; default '<stream>_DLQ'."
    )
    dead_letter_consumer: str = Field(
        "dagster-taskiq-executors",
        description="The durable consumer that reads the dead-letter stream (the executors).",
    )
    deduplication_window: float = Field(
        120.0,
        gt=0,
        description="The stream's duplicate window: seconds an identical resend (same "
        "Nats-Msg-Id) is dropped.",
    )

    # --- resilience ------------------------------------------------------------------------
    request_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for JetStream's answer to a publish or an ack."
    )

    def __init__(self, **values: Any) -> None:  # keyword arguments or the environment
        super().__init__(**values)

    # --- derived values --------------------------------------------------------------------

    @property
    def server_list(self) -> list[str]:
        return [server.strip() for server in self.servers.split(",") if server.strip()]

    @property
    def redacted_servers(self) -> str:
        """The servers without passwords or tokens (for logs and errors)."""
        return ",".join(redact_url(server, user_is_secret=True) for server in self.server_list)

    @property
    def queue(self) -> str:
        return self.stream

    def for_queue(self, queue: str) -> dict[str, Any]:
        """On NATS a queue is a subject (what ``dagster-taskiq/queue`` names) kept in a stream
        of its own (a stream holds the subjects it was made with): ``<stream>_<subject>``."""
        stream = re.sub(r"[^A-Za-z0-9_-]", "_", f"{self.stream}_{queue}")[:64]
        return {"subject": queue, "stream": stream}

    @property
    def dead_letter_queue(self) -> str | None:
        """The dead-letter stream, or None when ``dead_letters_enabled`` is false."""
        if not self.dead_letters_enabled:
            return None
        return self.dead_letter_stream or self.stream + DLQ_SUFFIX

    @property
    def advisory_subject(self) -> str:
        """Where JetStream announces a message of our consumer that hit ``max_deliveries``."""
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{self.consumer}"

    # --- validation ------------------------------------------------------------------------

    def _transport_problems(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []

        def problem(field: str, message: str) -> None:
            problems.append(self.problem(field, message))

        if not self.server_list:
            problem("servers", "give at least one server URL")
        for server in self.server_list:
            wrong = server_url_problem(
                server, _SCHEMES, "a nats:// (tls://, ws://, wss://)", user_is_secret=True
            )
            if wrong:
                problem("servers", wrong)
        for field in ("stream", "consumer", "dead_letter_consumer", "dead_letter_stream"):
            value = getattr(self, field)
            if value is not None and not _NAME.match(value):
                problem(
                    field,
                    f"1-64 characters without whitespace, '.', '*', '>', '/' or '\\', "
                    f"got {value!r}",
                )
        if not _SUBJECT.match(self.subject) or self.subject.startswith("$"):
            problem(
                "subject",
                f"a subject of dot-separated tokens without wildcards or whitespace, "
                f"got {self.subject!r}",
            )
        if self.dead_letter_queue is not None and self.dead_letter_queue == self.stream:
            problem("dead_letter_stream", f"must differ from the stream itself ({self.stream!r})")
        return problems
