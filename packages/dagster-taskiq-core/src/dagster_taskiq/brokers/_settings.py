"""``BrokerSettings``: the settings every broker backend shares, and their validation.

A backend's settings class subclasses it, sets its ``env_prefix`` and its ``settings_error``,
adds the fields of its transport and, in :meth:`BrokerSettings._transport_problems`, the checks
that span several of them. Values come from keyword arguments first, then from the environment
(``<PREFIX><FIELD>``); nothing is read at import time. Invalid values raise the backend's
``SettingsError`` subclass listing every problem, each naming the setting, the environment
variable(s) it is read from and the fix.

One name per idea across backends, executor config, CLI and worker options:
``visibility_timeout`` (how long a received message stays with its consumer without a heartbeat;
``taskiq_visibility_timeout`` is accepted as its one alias, where users already write it),
``max_deliveries``, ``dead_letters_enabled``, ``heartbeat_interval``, ``retry_*``.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dagster_taskiq.brokers._base import DeliveryPolicy
from dagster_taskiq.errors import SettingProblem, SettingsError
from dagster_taskiq.retrying import RetryBudget

__all__ = ["VISIBILITY_TIMEOUT_ALIAS", "BrokerSettings"]

VISIBILITY_TIMEOUT_ALIAS = "taskiq_visibility_timeout"
"""The one alias of ``visibility_timeout`` (its name in taskiq-aio-sqs and in our first
releases' executor config and SQS settings)."""

MAX_VISIBILITY_TIMEOUT = 43_200
"""12 hours: SQS's limit, and ours on every backend."""


class BrokerSettings(BaseSettings):
    """The fields, derived values and checks every backend's settings share."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_ignore_empty=True,
        populate_by_name=True,
    )

    settings_error: ClassVar[type[SettingsError]] = SettingsError
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    """Fields whose value an error never shows."""
    url_fields: ClassVar[frozenset[str]] = frozenset()
    """Fields whose value an error shows only without credentials (``<redacted>`` with an ``@``)."""
    renamed: ClassVar[Mapping[str, str]] = {}
    """Old setting names and their new ones: an old name is refused with the new one named."""
    queue_field: ClassVar[str] = "queue_name"
    """The setting naming the queue the broker listens to: what a step's op tag
    ``dagster-taskiq/queue`` and ``dagster-taskiq worker --queue`` name."""

    # --- delivery --------------------------------------------------------------------------
    visibility_timeout: float = Field(
        300.0,
        gt=0,
        le=MAX_VISIBILITY_TIMEOUT,
        description="Seconds a received, unacked message stays with its consumer without a "
        "heartbeat; then it is delivered again. Alias: taskiq_visibility_timeout.",
    )
    max_deliveries: int = Field(
        5, ge=1, le=1000, description="Deliveries before a message moves to the dead letters."
    )
    dead_letters_enabled: bool = Field(
        True, description="Move a message delivered max_deliveries times to the dead letters."
    )
    heartbeat_enabled: bool = Field(
        True, description="Extend a received message's lease until it is acked."
    )
    heartbeat_interval: float | None = Field(
        None, gt=0, description="Seconds between extensions; default a third of the timeout."
    )

    # --- resilience ------------------------------------------------------------------------
    retry_attempts: int = Field(10, ge=1, description="Attempts per call to an unreachable broker.")
    retry_initial_delay: float = Field(0.1, gt=0, description="First backoff, seconds.")
    retry_max_delay: float = Field(5.0, gt=0, description="Longest backoff, seconds.")
    retry_timeout: float = Field(60.0, gt=0, description="Total seconds to keep retrying.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection.")

    def __init__(self, **values: Any) -> None:
        problems = self._renamed_problems(values)
        if problems:
            raise self.settings_error(problems)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise self.settings_error(self._validation_problems(exc)) from None
        problems = self._shared_problems() + self._transport_problems()
        if problems:
            raise self.settings_error(problems)

    @model_validator(mode="before")
    @classmethod
    def _accept_the_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and VISIBILITY_TIMEOUT_ALIAS in data:
            data = dict(data)
            alias_value = data.pop(VISIBILITY_TIMEOUT_ALIAS)
            data.setdefault("visibility_timeout", alias_value)
        return data

    # --- derived values --------------------------------------------------------------------

    @property
    def queue(self) -> str:
        """The queue the broker listens to (SQS queue, Redis stream, NATS stream)."""
        raise NotImplementedError

    @property
    def dead_letter_queue(self) -> str | None:
        """Where dead letters go, or None when ``dead_letters_enabled`` is false."""
        raise NotImplementedError

    def for_queue(self, queue: str) -> dict[str, Any]:
        """The settings that make a broker like this one listen on ``queue`` instead."""
        return {self.queue_field: queue}

    def step_queue(self, label: object = None) -> str:
        """Where a step message goes: the queue its ``queue`` label names (op tag
        ``dagster-taskiq/queue``, a priority lane), else this broker's own (``queue_field``).
        The name a signed message is signed for, and checked against where it is received."""
        return str(label or getattr(self, self.queue_field))

    def delivery_policy(self) -> DeliveryPolicy:
        """How the broker treats what it receives (:class:`~dagster_taskiq.brokers.BrokerBase`)."""
        return DeliveryPolicy(
            queue=self.queue,
            visibility_timeout=self.visibility_timeout,
            heartbeat_enabled=self.heartbeat_enabled,
            heartbeat_every=self.heartbeat_every,
            dead_letter_queue=self.dead_letter_queue,
            max_deliveries=self.max_deliveries,
        )

    @property
    def heartbeat_every(self) -> float:
        """Seconds between the broker's own extensions of a held message's lease."""
        return self.heartbeat_interval or self.visibility_timeout / 3

    @property
    def retry_budget(self) -> RetryBudget:
        return RetryBudget.from_settings(self)

    @classmethod
    def env_vars(cls, field: str) -> tuple[str, ...]:
        """The environment variables a field is read from, most specific first."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return tuple(str(choice) for choice in alias.choices)
        return (cls.env_var(field),)

    @classmethod
    def env_var(cls, field: str) -> str:
        """``<PREFIX><FIELD>``: the variable a field without other sources is read from."""
        return str(cls.model_config.get("env_prefix", "")) + field.upper()

    def problem(self, field: str, message: str) -> SettingProblem:
        """A problem with ``field``, naming the variables it is read from."""
        return SettingProblem(field, self.env_vars(field), message)

    # --- validation ------------------------------------------------------------------------

    def _transport_problems(self) -> list[SettingProblem]:
        """A backend's checks across its own fields (override)."""
        return []

    def _shared_problems(self) -> list[SettingProblem]:
        problems = []
        delay = RetryBudget.delay_problem(self.retry_initial_delay, self.retry_max_delay)
        if delay:
            problems.append(self.problem("retry_max_delay", delay))
        if self.heartbeat_interval is not None and (
            self.heartbeat_interval >= self.visibility_timeout
        ):
            problems.append(
                self.problem(
                    "heartbeat_interval",
                    f"must be shorter than visibility_timeout ({self.visibility_timeout} s), "
                    f"got {self.heartbeat_interval}",
                )
            )
        return problems

    @classmethod
    def _renamed_problems(cls, values: Mapping[str, Any]) -> list[SettingProblem]:
        problems = []
        for old, new in cls.renamed.items():
            given = [name for name in (old, cls.env_var(old)) if name in values]
            if cls.env_var(old) in os.environ:
                given.append(cls.env_var(old))
            if given:
                problems.append(
                    SettingProblem(
                        old, tuple(given), f"renamed: use {new} ({cls.env_var(new)}) instead"
                    )
                )
        return problems

    @classmethod
    def _validation_problems(cls, exc: ValidationError) -> list[SettingProblem]:
        """pydantic's errors as problems: the field (named by its variable or an alias, named by
        the field again), its variables, pydantic's message and the value given, unless secret."""
        by_source = {
            source.lower(): field for field in cls.model_fields for source in cls.env_vars(field)
        }
        by_source[VISIBILITY_TIMEOUT_ALIAS] = "visibility_timeout"
        problems = []
        for error in exc.errors(include_url=False):
            where = str(error["loc"][0]) if error["loc"] else ""
            field = by_source.get(where.lower(), where)
            known = field in cls.model_fields
            message = error["msg"]
            if error["type"] != "extra_forbidden" and field not in cls.secret_fields:
                shown = error["input"]
                if field in cls.url_fields and "@" in repr(shown):
                    shown = "<redacted>"
                message = f"{message}, got {shown!r}"
            env_vars = cls.env_vars(field) if known else ("no such setting",)
            problems.append(SettingProblem(field, env_vars, message))
        return problems


def redact_url(url: str, *, user_is_secret: bool = False) -> str:
    """``url`` without its password (``user:***@``), for logs and errors; with
    ``user_is_secret`` (a token in the user part, as NATS allows) without its user part too."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    if user_is_secret:
        user = "***@"
    elif parts.password is None:
        return url
    else:
        user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + host))


def server_url_problem(
    url: str,
    schemes: Collection[str],
    expected: str,
    *,
    hostless: Collection[str] = (),
    user_is_secret: bool = False,
) -> str | None:
    """What is wrong with a server URL, or None: a scheme outside ``schemes`` (``expected``
    names them, e.g. ``"a redis://, rediss:// or unix://"``), no host (but for the ``hostless``
    schemes), a port that is not a number. The URL is shown redacted."""
    parts = urllib.parse.urlsplit(url)
    shown = redact_url(url, user_is_secret=user_is_secret)
    if parts.scheme not in schemes or (parts.scheme not in hostless and not parts.hostname):
        return f"not {expected} URL, got {shown!r}"
    try:
        _ = parts.port
    except ValueError:
        return f"the port is not a number, got {shown!r}"
    return None
