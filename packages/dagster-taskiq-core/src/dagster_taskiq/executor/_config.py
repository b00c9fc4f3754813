"""The executor's config schema (a module-level constant) and its parsed form."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

from dagster import Field, Permissive, StringSource

from dagster_taskiq._dagster_compat import (
    RetryMode,
    StepDependencyConfig,
    get_retries_config,
    get_step_dependency_config_field,
    get_tag_concurrency_limits_config,
)
from dagster_taskiq.brokers import VISIBILITY_TIMEOUT_ALIAS
from dagster_taskiq.errors import ExecutorConfigError, SigningKeyError
from dagster_taskiq.idempotency import DEFAULT_TABLE_PREFIX
from dagster_taskiq.signing import KEY_ENV, SigningKey, keys_from_text

QUEUE_TAG = "dagster-taskiq/queue"
"""Op tag that routes the op's steps to another queue (like dagster-celery's queue tag)."""

TIMEOUT_TAG = "dagster-taskiq/timeout"
"""Op tag: seconds the op's step may run; the worker interrupts it after (a failure that counts
against the op's RetryPolicy)."""

PRIORITY_TAG = "dagster/priority"
"""Dagster's priority tag: on an op, its steps' priority (Dagster orders a run's ready steps by
it); on a run, the priority of its steps that have none of their own. With
``priority_lanes``, it also picks the queue a step is sent to."""

DEFAULT_VISIBILITY_TIMEOUT = 300.0

TASKIQ_EXECUTOR_CONFIG_SCHEMA: dict[str, Field] = {
    "broker": Field(
        {
            "backend": Field(
                str,
                default_value="sqs",
                description=(
                    "Broker backend, found through the 'dagster_taskiq.brokers' entry points: "
                    "'sqs' (dagster-taskiq-sqs), 'memory' (dagster-taskiq-testing)."
                ),
            ),
            "settings": Field(
                Permissive(),  # type: ignore[no-untyped-call]
                default_value={},
                description=(
                    "The backend's own settings (for 'sqs': SqsSettings fields such as "
                    "queue_name, endpoint_url, region); unset ones come from its environment."
                ),
            ),
        },
        default_value={"backend": "sqs", "settings": {}},
        description="Where steps are sent.",
    ),
    "store_url": Field(
        StringSource,
        is_required=False,
        description=(
            "Idempotency store URL ('postgresql://...' or 'sqlite:///...'). Workers must use "
            "the same. Default: SQLite in the Dagster instance's storage directory."
        ),
    ),
    "signing_key": Field(
        StringSource,
        is_required=False,
        description=(
            "Sign every step message with this key, KEY_ID:SECRET (a secret of at least 32 "
            "characters; {env: VARIABLE} works); workers given the same key refuse messages "
            "not signed with it. Unset: the first key of the run process's "
            "DAGSTER_TASKIQ_SIGNING_KEY, if set (what workers read too), else unsigned. See "
            "docs/security.md."
        ),
    ),
    "table_prefix": Field(
        str,
        default_value=DEFAULT_TABLE_PREFIX,
        description="Prefix of the idempotency store's table names.",
    ),
    "visibility_timeout": Field(
        float,
        is_required=False,
        description=(
            "Seconds a step's lease (and its message's visibility) lasts without a heartbeat "
            f"(default {DEFAULT_VISIBILITY_TIMEOUT:g}). A step whose worker stops heartbeating "
            "for longer is run again. Alias: taskiq_visibility_timeout."
        ),
    ),
    VISIBILITY_TIMEOUT_ALIAS: Field(
        float,
        is_required=False,
        description="The one alias of visibility_timeout (its name in earlier releases).",
    ),
    "max_concurrent": Field(
        int,
        is_required=False,
        description="Most steps of this run in flight at once (default: no limit).",
    ),
    "tag_concurrency_limits": get_tag_concurrency_limits_config(),
    "step_dependency_config": get_step_dependency_config_field(),
    "priority_lanes": Field(
        [{"min_priority": int, "queue": str}],
        is_required=False,
        description=(
            "Priority across runs: a step whose priority (op tag dagster/priority, else the "
            "run's) is at least a lane's min_priority is sent to that lane's queue (the lane "
            "with the highest min_priority it reaches), unless its op names a queue with "
            "dagster-taskiq/queue. Workers read the lanes by weight: dagster-taskiq worker "
            "--queue urgent.fifo:9 --queue steps.fifo."
        ),
    ),
    "poll_interval": Field(
        float,
        default_value=0.5,
        description=(
            "Longest the executor waits for a step outcome before it looks at its run again "
            "(termination, retry delays): a recorded outcome wakes it at once (PostgreSQL "
            "store: LISTEN/NOTIFY; SQLite: polling), and waiting costs no database query."
        ),
    ),
    "retries": get_retries_config(),
}


@dataclasses.dataclass(frozen=True)
class PriorityLane:
    """Steps of at least ``min_priority`` go to ``queue``."""

    min_priority: int
    queue: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExecutorSettings:
    """The executor's config, validated."""

    backend: str = "sqs"
    broker_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    store_url: str | None = None
    signing_key: SigningKey | None = None
    """The key that signs each step message (``dagster_taskiq.signing``); None: unsigned."""
    table_prefix: str = DEFAULT_TABLE_PREFIX
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    max_concurrent: int | None = None
    tag_concurrency_limits: tuple[Mapping[str, Any], ...] = ()
    """Per-tag limits on this run's steps in flight at once, across all workers (the shape and
    meaning of ``multiprocess_executor``'s: ``key``, optional ``value``, ``limit``)."""
    step_dependency_config: StepDependencyConfig = dataclasses.field(
        default_factory=StepDependencyConfig.default
    )
    priority_lanes: tuple[PriorityLane, ...] = ()
    """Queues for the steps of higher priority, highest ``min_priority`` first."""
    poll_interval: float = 0.5
    retries: RetryMode = RetryMode.ENABLED

    def __post_init__(self) -> None:
        if self.visibility_timeout <= 0 or self.visibility_timeout > 43200:
            raise ExecutorConfigError(
                f"visibility_timeout must be in (0, 43200] seconds (SQS allows 12 h), "
                f"got {self.visibility_timeout}"
            )
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ExecutorConfigError(f"max_concurrent must be >= 1, got {self.max_concurrent}")
        for index, limit in enumerate(self.tag_concurrency_limits):
            _check_tag_limit(index, limit)
        _check_lanes(self.priority_lanes)
        if not 0 < self.poll_interval <= 60:
            raise ExecutorConfigError(f"poll_interval must be in (0, 60], got {self.poll_interval}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ExecutorSettings:
        broker = config.get("broker") or {}
        retries = RetryMode.from_config(config.get("retries") or {"enabled": {}})
        return cls(
            backend=broker.get("backend", "sqs"),
            broker_settings=dict(broker.get("settings") or {}),
            store_url=config.get("store_url"),
            signing_key=_signing_key(config.get("signing_key")),
            table_prefix=config.get("table_prefix", DEFAULT_TABLE_PREFIX),
            visibility_timeout=_visibility_timeout(config),
            max_concurrent=config.get("max_concurrent"),
            tag_concurrency_limits=tuple(config.get("tag_concurrency_limits") or ()),
            step_dependency_config=StepDependencyConfig.from_config(
                config.get("step_dependency_config")
            ),
            priority_lanes=tuple(
                sorted(
                    (PriorityLane(lane["min_priority"], lane["queue"]) for lane in lanes),
                    key=lambda lane: -lane.min_priority,
                )
            )
            if (lanes := config.get("priority_lanes"))
            else (),
            poll_interval=float(config.get("poll_interval", 0.5)),
            retries=retries or RetryMode.ENABLED,
        )


def _signing_key(text: str | None) -> SigningKey | None:
    """``signing_key``, else the first key of ``DAGSTER_TASKIQ_SIGNING_KEY`` (read when a run
    starts: the runs that a schedule or sensor starts have no run config of ours)."""
    try:
        if text is not None:
            return SigningKey.parse(text, source="signing_key")
        keys = keys_from_text(os.environ.get(KEY_ENV, ""), source=KEY_ENV)
    except SigningKeyError as exc:
        raise ExecutorConfigError(str(exc)) from None
    return keys[0] if keys else None


def _visibility_timeout(config: Mapping[str, Any]) -> float:
    """``visibility_timeout``, or its alias ``taskiq_visibility_timeout``; not both."""
    given = {
        key: config[key]
        for key in ("visibility_timeout", VISIBILITY_TIMEOUT_ALIAS)
        if key in config
    }
    if len(given) == 2:
        raise ExecutorConfigError(
            f"give visibility_timeout or its alias {VISIBILITY_TIMEOUT_ALIAS}, not both "
            f"(got {given['visibility_timeout']} and {given[VISIBILITY_TIMEOUT_ALIAS]})"
        )
    return float(next(iter(given.values()), DEFAULT_VISIBILITY_TIMEOUT))


def _check_tag_limit(index: int, limit: Mapping[str, Any]) -> None:
    """One entry of ``tag_concurrency_limits``: a tag key and a limit of at least 1."""
    field = f"tag_concurrency_limits[{index}]"
    if not isinstance(limit.get("key"), str) or not limit["key"]:
        raise ExecutorConfigError(f"{field}.key must be a tag name, got {limit.get('key')!r}")
    value = limit.get("limit")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ExecutorConfigError(
            f"{field}.limit must be an integer >= 1 (steps of the run with tag "
            f"{limit['key']!r} in flight at once), got {value!r}"
        )


def step_timeout(step_key: str, tags: Mapping[str, str] | None) -> float | None:
    """The step's ``dagster-taskiq/timeout`` tag in seconds, or None; ExecutorConfigError naming
    the step and the tag if it is not a positive number."""
    text = (tags or {}).get(TIMEOUT_TAG)
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ExecutorConfigError(
            f"op tag {TIMEOUT_TAG} of step {step_key!r} must be a number of seconds > 0 "
            f"(for example '600'), got {text!r}"
        )
    return seconds


def _check_lanes(lanes: tuple[PriorityLane, ...]) -> None:
    seen: dict[int, str] = {}
    for lane in lanes:
        if not lane.queue:
            raise ExecutorConfigError(
                f"priority_lanes: the lane of min_priority {lane.min_priority} names no queue"
            )
        if lane.min_priority in seen:
            raise ExecutorConfigError(
                f"priority_lanes: two lanes of min_priority {lane.min_priority} "
                f"({seen[lane.min_priority]!r} and {lane.queue!r}): give each lane its own"
            )
        seen[lane.min_priority] = lane.queue


def step_priority(
    step_key: str, step_tags: Mapping[str, str] | None, run_tags: Mapping[str, str]
) -> int:
    """The step's priority: its op's ``dagster/priority`` tag, else its run's, else 0;
    ExecutorConfigError naming the step and the tag if it is not a whole number."""
    text = (step_tags or {}).get(PRIORITY_TAG, run_tags.get(PRIORITY_TAG))
    if text is None:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ExecutorConfigError(
            f"tag {PRIORITY_TAG} of step {step_key!r} (or of its run) must be a whole number "
            f"(for example '5' or '-1'), got {text!r}"
        ) from None


def lane_queue(lanes: tuple[PriorityLane, ...], priority: int) -> str | None:
    """The queue of the highest lane ``priority`` reaches (``lanes`` highest first), or None."""
    return next((lane.queue for lane in lanes if priority >= lane.min_priority), None)
