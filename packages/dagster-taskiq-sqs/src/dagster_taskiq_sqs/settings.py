"""``SqsSettings``: where the queue is and how the broker uses it, validated at construction.

Values come from the keyword arguments first, then from the environment (prefix
``DAGSTER_TASKIQ_SQS_``; the endpoint also from ``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL``,
the region also from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``). Credentials left unset come from
the AWS credential chain when the client is created. Nothing is read at import time: only when
``SqsSettings(...)`` is called. The fields every backend shares (visibility timeout, dead
letters, heartbeat, retries) and their checks are core's
:class:`~dagster_taskiq.brokers.BrokerSettings`.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from dagster_taskiq.brokers import BrokerSettings
from dagster_taskiq.errors import SettingProblem
from dagster_taskiq.retrying import RetryBudget
from dagster_taskiq_sqs.errors import SqsSettingsError

__all__ = [
    "ENV_PREFIX",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "GroupStrategy",
    "RetryBudget",
    "SqsSettings",
]

ENV_PREFIX = "DAGSTER_TASKIQ_SQS_"
MAX_VISIBILITY_TIMEOUT = 43_200  # 12 hours
MAX_QUEUE_NAME = 80
FIFO_SUFFIX = ".fifo"
DLQ_SUFFIX = "-dlq"
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
_AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


class GroupStrategy(enum.StrEnum):
    """Which FIFO ``MessageGroupId`` a step message gets (a group delivers one at a time)."""

    PER_STEP = "per_step"
    """One group per step (its idempotency key): steps run concurrently. The default."""
    PER_RUN = "per_run"
    """One group per run: the steps of a run are delivered one at a time, in send order."""
    SINGLE = "single"
    """One group for everything: one step in flight on the whole queue."""


class DeduplicationScope(enum.StrEnum):
    """SQS ``DeduplicationScope`` of a FIFO queue."""

    QUEUE = "queue"
    MESSAGE_GROUP = "messageGroup"


class FifoThroughputLimit(enum.StrEnum):
    """SQS ``FifoThroughputLimit`` of a FIFO queue (``perMessageGroupId`` = high throughput)."""

    PER_QUEUE = "perQueue"
    PER_MESSAGE_GROUP_ID = "perMessageGroupId"


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


class SqsSettings(BrokerSettings):
    """Settings of :class:`~dagster_taskiq_sqs.SqsAsyncBroker`.

    Invalid values raise :class:`~dagster_taskiq_sqs.errors.SqsSettingsError`, whose message
    names every offending setting and the environment variable(s) it is read from.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)
    settings_error = SqsSettingsError
    secret_fields = frozenset({"aws_access_key_id", "aws_secret_access_key", "aws_session_token"})
    renamed: ClassVar[Mapping[str, str]] = {
        "max_receive_count": "max_deliveries",
        "dlq_enabled": "dead_letters_enabled",
        "dlq_name": "dead_letter_queue_name",
    }

    # --- where -----------------------------------------------------------------------------
    queue_name: str = Field(
        "dagster-taskiq.fifo",
        description="The queue's name or URL; a name ending in '.fifo' is a FIFO queue.",
    )
    endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            _env("endpoint_url"), "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"
        ),
        description="SQS endpoint (LocalStack: http://localhost:4566); unset: AWS's.",
    )
    region: str = Field(
        "us-east-1",
        validation_alias=AliasChoices(_env("region"), "AWS_REGION", "AWS_DEFAULT_REGION"),
        description="AWS region.",
    )
    aws_access_key_id: SecretStr | None = Field(
        None, description="Unset: the AWS credential chain (dummy ones for a custom endpoint)."
    )
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None

    # --- the queue -------------------------------------------------------------------------
    visibility_timeout: int = Field(  # whole seconds, as SQS takes them
        300,
        ge=1,
        le=MAX_VISIBILITY_TIMEOUT,
        validation_alias=AliasChoices(
            _env("visibility_timeout"), _env("taskiq_visibility_timeout")
        ),
        description="Seconds a received message stays invisible without a heartbeat. "
        "Alias: taskiq_visibility_timeout.",
    )
    wait_time_seconds: int = Field(20, ge=0, le=20, description="Long-poll wait per receive.")
    max_messages: int = Field(
        10,
        ge=1,
        le=10,
        description="Most messages per receive. The dagster-taskiq worker takes no more than "
        "it has free slots (a message taken and not started would wait, invisible); another "
        "consumer (taskiq's own worker) takes up to this many: 1 there keeps it from hoarding.",
    )
    receive_ahead: bool = Field(
        False,
        description="Start the next receive while the consumer takes the current batch: "
        "faster for short tasks, but a busy worker holds up to two batches.",
    )
    fifo: bool | None = Field(
        None, description="Must agree with the '.fifo' suffix of queue_name when given."
    )
    deduplication_scope: DeduplicationScope = DeduplicationScope.QUEUE
    fifo_throughput_limit: FifoThroughputLimit = FifoThroughputLimit.PER_QUEUE
    group_strategy: GroupStrategy = GroupStrategy.PER_STEP
    dead_letter_queue_name: str | None = Field(
        None, description="Dead-letter queue name; default '<queue>-dlq[.fifo]'."
    )
    create_queues_if_missing: bool = Field(
        False, description="Create the queue and its dead-letter queue when they do not exist."
    )

    def __init__(self, **values: Any) -> None:  # keyword arguments or the environment
        super().__init__(**values)

    # --- derived values --------------------------------------------------------------------

    @property
    def queue_url(self) -> str | None:
        """The queue URL when ``queue_name`` is one, else None (looked up at startup)."""
        return self.queue_name if _is_url(self.queue_name) else None

    @property
    def queue(self) -> str:
        """The queue's name (the last path segment when ``queue_name`` is a URL)."""
        return queue_name_of(self.queue_name)

    def step_queue(self, label: object = None) -> str:
        """The queue's name, also when the label or ``queue_name`` is a URL."""
        return queue_name_of(super().step_queue(label))

    @property
    def is_fifo(self) -> bool:
        return self.queue.endswith(FIFO_SUFFIX)

    @property
    def dead_letter_queue(self) -> str | None:
        """The dead-letter queue's name, or None when ``dead_letters_enabled`` is false."""
        if not self.dead_letters_enabled:
            return None
        return self.dead_letter_queue_name or dead_letter_queue_name(self.queue)

    @property
    def has_custom_endpoint(self) -> bool:
        """True for LocalStack, moto or any endpoint that is not AWS's own."""
        if self.endpoint_url is None:
            return False
        host = urllib.parse.urlsplit(self.endpoint_url).hostname or ""
        return not host.endswith(_AWS_HOST_SUFFIXES)

    # --- validation ------------------------------------------------------------------------

    def _transport_problems(self) -> list[SettingProblem]:
        problems: list[SettingProblem] = []

        def problem(field: str, message: str) -> None:
            problems.append(self.problem(field, message))

        name_error = _queue_name_problem(self.queue_name)
        if name_error:
            problem("queue_name", name_error)
        if self.endpoint_url is not None and not _is_url(self.endpoint_url):
            problem("endpoint_url", f"not an http(s) URL with a host, got {self.endpoint_url!r}")
        if not _REGION.match(self.region):
            problem("region", f"not a region name like 'us-east-1', got {self.region!r}")
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            field = (
                "aws_secret_access_key"
                if self.aws_secret_access_key is None
                else ("aws_access_key_id")
            )
            problem(field, "set both aws_access_key_id and aws_secret_access_key, or neither")
        if name_error is None:
            self._fifo_problems(problem)
        return problems

    def _fifo_problems(self, problem: Any) -> None:
        fifo = self.is_fifo
        if self.fifo is not None and self.fifo != fifo:
            problem(
                "fifo",
                f"is {str(self.fifo).lower()} but queue {self.queue!r} "
                + (
                    "has no '.fifo' suffix (SQS requires it on FIFO queues)"
                    if self.fifo
                    else "ends in '.fifo' (SQS makes such a queue FIFO)"
                ),
            )
        if not fifo:
            if self.deduplication_scope is not DeduplicationScope.QUEUE:
                problem(
                    "deduplication_scope", f"applies to FIFO queues only; {self.queue!r} is not one"
                )
            if self.fifo_throughput_limit is not FifoThroughputLimit.PER_QUEUE:
                problem(
                    "fifo_throughput_limit",
                    f"applies to FIFO queues only; {self.queue!r} is not one",
                )
        elif (
            self.fifo_throughput_limit is FifoThroughputLimit.PER_MESSAGE_GROUP_ID
            and self.deduplication_scope is not DeduplicationScope.MESSAGE_GROUP
        ):
            problem(
                "fifo_throughput_limit",
                "perMessageGroupId needs deduplication_scope 'messageGroup' (SQS high throughput)",
            )
        dlq = self.dead_letter_queue
        if dlq is None:
            return
        if self.dead_letter_queue_name is not None:
            dlq_error = _queue_name_problem(self.dead_letter_queue_name, url_allowed=False)
            if dlq_error:
                problem("dead_letter_queue_name", dlq_error)
                return
        elif len(dlq) > MAX_QUEUE_NAME:
            problem(
                "dead_letter_queue_name",
                f"the default {dlq!r} is longer than {MAX_QUEUE_NAME} characters; set one",
            )
            return
        if dlq.endswith(FIFO_SUFFIX) != fifo:
            problem(
                "dead_letter_queue_name",
                f"{dlq!r} must {'' if fifo else 'not '}end in '.fifo': SQS requires a "
                f"dead-letter queue of the same type as {self.queue!r}",
            )
        if dlq == self.queue:
            problem("dead_letter_queue_name", f"must differ from the queue itself ({self.queue!r})")


def dead_letter_queue_name(queue: str) -> str:
    """``steps.fifo`` -> ``steps-dlq.fifo``; ``steps`` -> ``steps-dlq``."""
    if queue.endswith(FIFO_SUFFIX):
        return queue.removesuffix(FIFO_SUFFIX) + DLQ_SUFFIX + FIFO_SUFFIX
    return queue + DLQ_SUFFIX


def _is_url(value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def queue_name_of(queue: str) -> str:
    if _is_url(queue):
        return urllib.parse.urlsplit(queue).path.rstrip("/").rsplit("/", 1)[-1]
    return queue


def _queue_name_problem(value: str, *, url_allowed: bool = True) -> str | None:
    name = queue_name_of(value) if url_allowed else value
    if url_allowed and _is_url(value) and not name:
        return f"the URL {value!r} names no queue"
    base = name.removesuffix(FIFO_SUFFIX)
    if len(name) > MAX_QUEUE_NAME or not _QUEUE_NAME.match(base):
        return (
            f"not a valid SQS queue name (1-{MAX_QUEUE_NAME} characters of letters, digits, "
            f"'-' and '_', optionally ending in '.fifo'), got {value!r}"
        )
    return None
