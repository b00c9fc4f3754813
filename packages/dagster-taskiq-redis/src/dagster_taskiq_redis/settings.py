"""``RedisSettings``: where the stream is and how the broker uses it, validated at construction.

Values come from the keyword arguments first, then from the environment (prefix
``DAGSTER_TASKIQ_REDIS_``, e.g. ``DAGSTER_TASKIQ_REDIS_URL``). Nothing is read at import time:
only when ``RedisSettings(...)`` is called. Invalid values raise
:class:`~dagster_taskiq_redis.errors.RedisSettingsError` naming each setting and its variable.
The fields every backend shares (visibility timeout, dead letters, heartbeat, retries) and their
checks are core's :class:`~dagster_taskiq.brokers.BrokerSettings`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from dagster_taskiq.brokers import BrokerSettings, redact_url, server_url_problem
from dagster_taskiq.errors import SettingProblem
from dagster_taskiq.retrying import RetryBudget
from dagster_taskiq_redis.errors import RedisSettingsError

__all__ = ["ENV_PREFIX", "RedisSettings", "RetryBudget"]

ENV_PREFIX = "DAGSTER_TASKIQ_REDIS_"
DLQ_SUFFIX = "-dlq"
_SCHEMES = frozenset({"redis", "rediss", "unix"})
_NAME = re.compile(r"^[^\s]{1,200}$")


class RedisSettings(BrokerSettings):
    """Settings of :class:`~dagster_taskiq_redis.RedisBroker`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)
    settings_error = RedisSettingsError
    url_fields = frozenset({"url"})
    renamed: ClassVar[Mapping[str, str]] = {"dedup_window": "deduplication_window"}
    queue_field: ClassVar[str] = "stream"

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
    block_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Longest wait per XREADGROUP; idle consumers look for messages to reclaim "
        "this often.",
    )
    dead_letter_stream: str | None = Field(
        None, description="Dead-letter stream; default '<stream>-dlq'."
    )
    dead_letter_group: str = Field(
        "dagster-taskiq-executors",
        description="The consumer group that reads the dead-letter stream (the executors).",
    )
    deduplication_window: float = Field(
        300.0,
        ge=0,
        description="Seconds an identical resend of a message (same deduplication id) is "
        "dropped; 0 turns deduplication off.",
    )
    reclaim_scan: int = Field(
        32, ge=1, le=10_000, description="Pending entries looked at per reclaim pass."
    )

    # --- resilience ------------------------------------------------------------------------
    max_connections: int = Field(
        32, ge=2, description="Connections in the pool (a blocking read holds one)."
    )

    def __init__(self, **values: Any) -> None:  # keyword arguments or the environment
        super().__init__(**values)

    # --- derived values --------------------------------------------------------------------

    @property
    def queue(self) -> str:
        return self.stream

    @property
    def dead_letter_queue(self) -> str | None:
        """The dead-letter stream, or None when ``dead_letters_enabled`` is false."""
        if not self.dead_letters_enabled:
            return None
        return self.dead_letter_stream or self.stream + DLQ_SUFFIX

    @property
    def visibility_ms(self) -> int:
        return max(1, round(self.visibility_timeout * 1000))

    @property
    def redacted_url(self) -> str:
        """The URL without its password (for logs and errors)."""
        return redact_url(self.url)

    # --- validation ------------------------------------------------------------------------

    def _transport_problems(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []

        def problem(field: str, message: str) -> None:
            problems.append(self.problem(field, message))

        wrong = server_url_problem(
            self.url, _SCHEMES, "a redis://, rediss:// or unix://", hostless={"unix"}
        )
        if wrong:
            problem("url", wrong)
        for field in ("stream", "group", "dead_letter_group", "consumer_name"):
            value = getattr(self, field)
            if value is not None and not _NAME.match(value):
                problem(field, f"1-200 characters without whitespace, got {value!r}")
        if self.dead_letter_stream is not None and not _NAME.match(self.dead_letter_stream):
            problem(
                "dead_letter_stream",
                f"1-200 characters without whitespace, got {self.dead_letter_stream!r}",
            )
        elif self.dead_letter_queue == self.stream:
            problem("dead_letter_stream", f"must differ from the stream itself ({self.stream!r})")
        return problems
