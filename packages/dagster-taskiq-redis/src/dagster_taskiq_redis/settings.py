"""``RedisSettings``: where the stream is and how the broker uses it, validated at construction.

Values come from the keyword arguments first, then from the environment (prefix
``DAGSTER_TASKIQ_REDIS_``, e.g. ``DAGSTER_TASKIQ_REDIS_URL``). Nothing is read at import time:
only when ``RedisSettings(...)`` is called. Invalid values raise
:class:`~dagster_taskiq_redis.errors.RedisSettingsError` naming each setting and its variable.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from dagster_taskiq.errors import validation_problems
from dagster_taskiq.retrying import RetryBudget
from dagster_taskiq_redis.errors import RedisSettingsError, SettingProblem

__all__ = ["ENV_PREFIX", "RedisSettings", "RetryBudget"]

ENV_PREFIX = "DAGSTER_TASKIQ_REDIS_"
DLQ_SUFFIX = "-dlq"
_SCHEMES = frozenset({"redis", "rediss", "unix"})
_NAME = re.compile(r"^[^\s]{1,200}$")


def env_var(field: str) -> str:
    """The environment variable a setting is read from."""
    return ENV_PREFIX + field.upper()


class RedisSettings(BaseSettings):
    """Settings of :class:`~dagster_taskiq_redis.RedisBroker`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        env_ignore_empty=True,
    )

    # --- where -----------------------------------------------------------------------------
    url: str = Field(
        "redis://127.0.0.1:6379",
        description="Redis URL (redis://, rediss:// or unix://), with a database and password "
        "if needed.",
    )
    stream: str = Field("dagster-taskiq", description="The stream (key) steps are sent to.")
    group: str = Field("dagster-taskiq", description="The consumer group of the workers.")
    consumer_name: str | None = Field(
        None, description="This broker's consumer name; default host:pid:random (one per broker)."
    )

    # --- delivery --------------------------------------------------------------------------
    visibility_timeout: float = Field(
        300.0,
        gt=0,
        le=43_200,
        description="Seconds a delivered, unacked message stays with its consumer without a "
        "heartbeat; then another consumer claims it (XCLAIM of entries idle that long).",
    )
    block_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Longest wait per XREADGROUP; idle consumers look for messages to reclaim "
        "this often.",
    )
    max_deliveries: int = Field(
        5, ge=1, le=1000, description="Deliveries before a message moves to the dead-letter stream."
    )
    dead_letters_enabled: bool = Field(True, description="Give the stream a dead-letter stream.")
    dead_letter_stream: str | None = Field(
        None, description="Dead-letter stream; default '<stream>-dlq'."
    )
    dead_letter_group: str = Field(
        "dagster-taskiq-executors",
        description="The consumer group that reads the dead-letter stream (the executors).",
    )
    dedup_window: float = Field(
        300.0,
        ge=0,
        description="Seconds an identical resend of a message (same deduplication id) is "
        "dropped; 0 turns deduplication off.",
    )
    reclaim_scan: int = Field(
        32, ge=1, le=10_000, description="Pending entries looked at per reclaim pass."
    )

    # --- resilience ------------------------------------------------------------------------
    retry_attempts: int = Field(10, ge=1, description="Attempts per call to an unreachable Redis.")
    retry_initial_delay: float = Field(0.1, gt=0, description="First backoff, seconds.")
    retry_max_delay: float = Field(5.0, gt=0, description="Longest backoff, seconds.")
    retry_timeout: float = Field(60.0, gt=0, description="Total seconds to keep retrying.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection.")
    max_connections: int = Field(
        32, ge=2, description="Connections in the pool (a blocking read holds one)."
    )
    heartbeat_enabled: bool = Field(
        True, description="Refresh a delivered message's idle time until it is acked."
    )
    heartbeat_interval: float | None = Field(
        None, gt=0, description="Seconds between refreshes; default a third of the timeout."
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise RedisSettingsError(_problems(exc)) from None
        problems = self._cross_field_problems()
        if problems:
            raise RedisSettingsError(problems)

    # --- derived values --------------------------------------------------------------------

    @property
    def dead_letters(self) -> str | None:
        """The dead-letter stream, or None when ``dead_letters_enabled`` is false."""
        if not self.dead_letters_enabled:
            return None
        return self.dead_letter_stream or self.stream + DLQ_SUFFIX

    @property
    def visibility_ms(self) -> int:
        return max(1, round(self.visibility_timeout * 1000))

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat_interval or self.visibility_timeout / 3

    @property
    def redacted_url(self) -> str:
        """The URL without its password (for logs and errors)."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))

    @property
    def retry_budget(self) -> RetryBudget:
        return RetryBudget.from_settings(self)

    # --- validation ------------------------------------------------------------------------

    def _cross_field_problems(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []

        def problem(field: str, message: str) -> None:
            problems.append(SettingProblem(field, env_var(field), message))

        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in _SCHEMES or (parts.scheme != "unix" and not parts.hostname):
            problem("url", f"not a redis://, rediss:// or unix:// URL, got {self.redacted_url!r}")
        else:
            try:
                _ = parts.port
            except ValueError:
                problem("url", f"the port is not a number, got {self.redacted_url!r}")
        for field in ("stream", "group", "dead_letter_group", "consumer_name"):
            value = getattr(self, field)
            if value is not None and not _NAME.match(value):
                problem(field, f"1-200 characters without whitespace, got {value!r}")
        if self.dead_letter_stream is not None and not _NAME.match(self.dead_letter_stream):
            problem(
                "dead_letter_stream",
                f"1-200 characters without whitespace, got {self.dead_letter_stream!r}",
            )
        elif self.dead_letters == self.stream:
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


def _problems(exc: ValidationError) -> list[SettingProblem]:
    return validation_problems(
        exc.errors(include_url=False),
        env_prefix=ENV_PREFIX,
        fields=RedisSettings.model_fields,
        redacted_field="url",
    )
