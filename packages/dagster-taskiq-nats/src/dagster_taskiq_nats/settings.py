"""``NatsSettings``: where the stream is and how the broker uses it, validated at construction.

Values come from the keyword arguments first, then from the environment (prefix
``DAGSTER_TASKIQ_NATS_``, e.g. ``DAGSTER_TASKIQ_NATS_SERVERS``). Nothing is read at import time:
only when ``NatsSettings(...)`` is called. Invalid values raise
:class:`~dagster_taskiq_nats.errors.NatsSettingsError` naming each setting and its variable.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from dagster_taskiq.errors import validation_problems
from dagster_taskiq.retrying import RetryBudget
from dagster_taskiq_nats.errors import NatsSettingsError, SettingProblem

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


def env_var(field: str) -> str:
    """The environment variable a setting is read from."""
    return ENV_PREFIX + field.upper()


class NatsSettings(BaseSettings):
    """Settings of :class:`~dagster_taskiq_nats.NatsJetStreamBroker`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        env_ignore_empty=True,
    )

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
    visibility_timeout: float = Field(
        300.0,
        gt=0,
        le=43_200,
        description="The consumer's ack wait: seconds a delivered, unacked message stays with "
        "its worker without an in-progress ack, then JetStream redelivers it.",
    )
    fetch_timeout: float = Field(
        5.0, gt=0, le=60, description="Longest wait per pull request (fetch of one message)."
    )
    max_deliveries: int = Field(
        5,
        ge=1,
        le=1000,
        description="The consumer's max_deliver: deliveries before a message is dead-lettered.",
    )
    dead_letters_enabled: bool = Field(
        True,
        description="Capture JetStream's max-deliveries advisories in a dead-letter stream "
        "(without it, max_deliver is unlimited).",
    )
    dead_letter_stream: str | None = Field(
        None, description="Dead-letter (advisory) stream; default '<stream>_DLQ'."
    )
    dead_letter_consumer: str = Field(
        "dagster-taskiq-executors",
        description="The durable consumer that reads the dead-letter stream (the executors).",
    )
    duplicate_window: float = Field(
        120.0,
        gt=0,
        description="The stream's duplicate window: seconds an identical resend (same "
        "Nats-Msg-Id) is dropped.",
    )

    # --- resilience ------------------------------------------------------------------------
    retry_attempts: int = Field(10, ge=1, description="Attempts per call to an unreachable NATS.")
    retry_initial_delay: float = Field(0.1, gt=0, description="First backoff, seconds.")
    retry_max_delay: float = Field(5.0, gt=0, description="Longest backoff, seconds.")
    retry_timeout: float = Field(60.0, gt=0, description="Total seconds to keep retrying.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection.")
    request_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for JetStream's answer to a publish or an ack."
    )
    heartbeat_enabled: bool = Field(
        True, description="Send in-progress acks for a delivered message until it is acked."
    )
    heartbeat_interval: float | None = Field(
        None, gt=0, description="Seconds between in-progress acks; default a third of the timeout."
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise NatsSettingsError(_problems(exc)) from None
        problems = self._cross_field_problems()
        if problems:
            raise NatsSettingsError(problems)

    # --- derived values --------------------------------------------------------------------

    @property
    def server_list(self) -> list[str]:
        return [server.strip() for server in self.servers.split(",") if server.strip()]

    @property
    def redacted_servers(self) -> str:
        """The servers without passwords or tokens (for logs and errors)."""
        return ",".join(_redact(server) for server in self.server_list)

    @property
    def dead_letters(self) -> str | None:
        """The dead-letter stream, or None when ``dead_letters_enabled`` is false."""
        if not self.dead_letters_enabled:
            return None
        return self.dead_letter_stream or self.stream + DLQ_SUFFIX

    @property
    def advisory_subject(self) -> str:
        """Where JetStream announces a message of our consumer that hit ``max_deliveries``."""
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{self.consumer}"

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat_interval or self.visibility_timeout / 3

    @property
    def retry_budget(self) -> RetryBudget:
        return RetryBudget.from_settings(self)

    # --- validation ------------------------------------------------------------------------

    def _cross_field_problems(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []

        def problem(field: str, message: str) -> None:
            problems.append(SettingProblem(field, env_var(field), message))

        if not self.server_list:
            problem("servers", "give at least one server URL")
        for server in self.server_list:
            shown = _redact(server)
            parts = urllib.parse.urlsplit(server)
            if parts.scheme not in _SCHEMES or not parts.hostname:
                problem("servers", f"not a nats:// (tls://, ws://, wss://) URL, got {shown!r}")
                continue
            try:
                _ = parts.port
            except ValueError:
                problem("servers", f"the port is not a number, got {shown!r}")
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
        if self.dead_letters is not None and self.dead_letters == self.stream:
            problem("dead_letter_stream", f"must differ from the stream itself ({self.stream!r})")
        delay_problem = RetryBudget.delay_problem(self.retry_initial_delay, self.retry_max_delay)
        if delay_problem:
            problem("retry_max_delay", delay_problem)
        if self.heartbeat_interval is not None and self.heartbeat_interval >= (
            self.visibility_timeout
        ):
            problem(
                "heartbeat_interval",
                f"must be shorter than visibility_timeout ({self.visibility_timeout} s), "
                f"got {self.heartbeat_interval}",
            )
        return problems


def _redact(server: str) -> str:
    parts = urllib.parse.urlsplit(server)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
    return urllib.parse.urlunsplit(parts)


def _problems(exc: ValidationError) -> list[SettingProblem]:
    return validation_problems(
        exc.errors(include_url=False),
        env_prefix=ENV_PREFIX,
        fields=NatsSettings.model_fields,
        redacted_field="servers",
    )
