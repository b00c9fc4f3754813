"""Startup: find (or, when allowed, create) a queue and its dead-letter queue, and check them.

An existing queue must agree with the settings on what the broker relies on: FIFO or not, the
visibility timeout, the redrive policy (dead-letter queue and ``maxReceiveCount``), and, where
the server reports them, FIFO deduplication scope and throughput limit. A disagreement is a
:class:`~dagster_taskiq_sqs.errors.QueueConfigurationError` listing every difference with the
setting (and environment variable) to change; the broker never rewrites an existing queue.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import structlog

from dagster_taskiq_sqs.client import SqsCaller
from dagster_taskiq_sqs.endpoints import rewrite_queue_url
from dagster_taskiq_sqs.errors import QueueConfigurationError, QueueNotFoundError, error_code
from dagster_taskiq_sqs.settings import FIFO_SUFFIX, SqsSettings, dead_letter_queue_name

__all__ = ["DEFAULT_MAXIMUM_MESSAGE_SIZE", "QueueInfo", "ensure_queue"]

DEFAULT_MAXIMUM_MESSAGE_SIZE = 262_144
"""Assumed when a server does not report ``MaximumMessageSize`` (the pre-2025 AWS limit)."""
DLQ_RETENTION_SECONDS = "1209600"  # 14 days, SQS's maximum: dead letters wait for a human
_NON_EXISTENT = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_log = structlog.get_logger("dagster_taskiq_sqs")


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueInfo:
    """A resolved queue: where it is and the attributes the broker uses."""

    name: str
    url: str
    arn: str | None
    is_fifo: bool
    max_message_size: int
    visibility_timeout: int
    dead_letter: QueueInfo | None = None


async def ensure_queue(
    call: SqsCaller, settings: SqsSettings, name: str | None = None
) -> QueueInfo:
    """Resolve queue ``name`` (default: the settings' queue) and its dead-letter queue."""
    default = name is None or name == settings.queue
    queue_name = settings.queue if name is None else name
    dlq_name = settings.dead_letter_queue
    if dlq_name is not None and not default:
        dlq_name = dead_letter_queue_name(queue_name)
    dead_letter = None
    if dlq_name is not None:
        dead_letter, _ = await _resolve(
            call, settings, dlq_name, None, _dlq_attributes(settings, dlq_name)
        )
    wanted = _queue_attributes(settings, queue_name, dead_letter)
    known_url = settings.queue_url if default else None
    info, attributes = await _resolve(call, settings, queue_name, known_url, wanted)
    _check(settings, queue_name, info.url, attributes, dead_letter)
    return dataclasses.replace(info, dead_letter=dead_letter)


async def _resolve(
    call: SqsCaller,
    settings: SqsSettings,
    name: str,
    known_url: str | None,
    create_attributes: dict[str, str],
) -> tuple[QueueInfo, dict[str, str]]:
    url = await _lookup(call, name) if known_url is None else known_url
    attributes: dict[str, str] | None = None
    if url is not None:
        url = rewrite_queue_url(url, settings.endpoint_url)
        try:
            attributes = await _attributes(call, url, name)
        except _QueueMissingError:
            attributes = None
    if url is None or attributes is None:
        if not settings.create_queues_if_missing:
            raise QueueNotFoundError(
                f"SQS queue {name!r} does not exist at {call.endpoint}; create it, or set "
                f"create_queues_if_missing (DAGSTER_TASKIQ_SQS_CREATE_QUEUES_IF_MISSING=true)"
            )
        url = rewrite_queue_url(
            await _create(call, settings, name, create_attributes), settings.endpoint_url
        )
        attributes = await _attributes(call, url, name)
    info = QueueInfo(
        name=name,
        url=url,
        arn=attributes.get("QueueArn"),
        is_fifo=attributes.get("FifoQueue", "false").lower() == "true",
        max_message_size=int(attributes.get("MaximumMessageSize", DEFAULT_MAXIMUM_MESSAGE_SIZE)),
        visibility_timeout=int(attributes.get("VisibilityTimeout", settings.visibility_timeout)),
    )
    return info, attributes


class _QueueMissingError(Exception):
    pass


async def _lookup(call: SqsCaller, name: str) -> str | None:
    try:
        response = await call("get_queue_url", name, QueueName=name)
    except Exception as exc:
        if error_code(exc) in _NON_EXISTENT:
            return None
        raise
    return str(response["QueueUrl"])


async def _create(
    call: SqsCaller, settings: SqsSettings, name: str, attributes: dict[str, str]
) -> str:
    try:
        response = await call("create_queue", name, QueueName=name, Attributes=attributes)
    except Exception as exc:
        # Another process created it first, with other attributes: use it (then checked).
        if error_code(exc) in {"QueueAlreadyExists", "QueueNameExists"}:
            url = await _lookup(call, name)
            if url is not None:
                return url
        raise
    _log.info("sqs_queue_created", queue=name, endpoint=call.endpoint)
    return str(response["QueueUrl"])


async def _attributes(call: SqsCaller, url: str, name: str) -> dict[str, str]:
    try:
        response = await call("get_queue_attributes", name, QueueUrl=url, AttributeNames=["All"])
    except Exception as exc:
        if error_code(exc) in _NON_EXISTENT:
            raise _QueueMissingError from exc
        raise
    return dict(response.get("Attributes", {}))


def _fifo_attributes(settings: SqsSettings) -> dict[str, str]:
    return {
        "FifoQueue": "true",
        "DeduplicationScope": settings.deduplication_scope.value,
        "FifoThroughputLimit": settings.fifo_throughput_limit.value,
    }


def _dlq_attributes(settings: SqsSettings, name: str) -> dict[str, str]:
    attributes = {
        "VisibilityTimeout": str(settings.visibility_timeout),
        "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
    }
    if name.endswith(FIFO_SUFFIX):
        attributes.update(_fifo_attributes(settings))
    return attributes


def _queue_attributes(
    settings: SqsSettings, name: str, dead_letter: QueueInfo | None
) -> dict[str, str]:
    attributes = {"VisibilityTimeout": str(settings.visibility_timeout)}
    if name.endswith(FIFO_SUFFIX):
        attributes.update(_fifo_attributes(settings))
    if dead_letter is not None:
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": dead_letter.arn,
                "maxReceiveCount": settings.max_deliveries,
            }
        )
    return attributes


def _setting(settings: SqsSettings, field: str) -> str:
    return f"{field} ({' / '.join(settings.env_vars(field))}) is {getattr(settings, field)!r}"


def _check(
    settings: SqsSettings,
    name: str,
    url: str,
    attributes: Mapping[str, str],
    dead_letter: QueueInfo | None,
) -> None:
    problems: list[str] = []
    fifo = name.endswith(FIFO_SUFFIX)
    is_fifo = attributes.get("FifoQueue", "false").lower() == "true"
    if is_fifo != fifo:
        problems.append(
            f"FifoQueue is {str(is_fifo).lower()} but the name {'ends' if fifo else 'does not end'}"
            f" in '.fifo'"
        )
    visibility = attributes.get("VisibilityTimeout")
    if visibility is not None and int(visibility) != settings.visibility_timeout:
        problems.append(
            f"VisibilityTimeout is {visibility}, {_setting(settings, 'visibility_timeout')}"
        )
    if fifo and is_fifo:
        for attribute, field in (
            ("DeduplicationScope", "deduplication_scope"),
            ("FifoThroughputLimit", "fifo_throughput_limit"),
        ):
            actual = attributes.get(attribute)
            expected = getattr(settings, field).value
            if actual is not None and actual != expected:
                problems.append(f"{attribute} is {actual!r}, {_setting(settings, field)}")
    problems.extend(_redrive_problems(settings, attributes, dead_letter))
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise QueueConfigurationError(
            f"SQS queue {name!r} ({url}) does not match the settings:\n{lines}\n"
            f"Change the queue's attributes (SetQueueAttributes) or the settings; the broker "
            f"does not modify an existing queue."
        )


def _redrive_problems(
    settings: SqsSettings, attributes: Mapping[str, str], dead_letter: QueueInfo | None
) -> list[str]:
    raw = attributes.get("RedrivePolicy")
    policy: dict[str, Any] = json.loads(raw) if raw else {}
    if dead_letter is None:
        if policy:
            return [
                f"it has a RedrivePolicy to {policy.get('deadLetterTargetArn')!r} but "
                f"{_setting(settings, 'dead_letters_enabled')}: its dead letters would never be "
                f"read"
            ]
        return []
    if not policy:
        return [
            f"it has no RedrivePolicy, but {_setting(settings, 'dead_letters_enabled')} "
            f"(dead-letter queue {dead_letter.name!r})"
        ]
    problems = []
    target = policy.get("deadLetterTargetArn")
    if dead_letter.arn is not None and target != dead_letter.arn:
        problems.append(
            f"RedrivePolicy sends dead letters to {target!r}, not to {dead_letter.arn!r} "
            f"({_setting(settings, 'dead_letter_queue_name')})"
        )
    receives = policy.get("maxReceiveCount")
    if receives is not None and int(receives) != settings.max_deliveries:
        problems.append(
            f"RedrivePolicy maxReceiveCount is {receives}, {_setting(settings, 'max_deliveries')}"
        )
    return problems
