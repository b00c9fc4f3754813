"""Queue attributes: names, defaults, limits and validation, as SQS documents them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster_taskiq_testing._errors import SqsError

MAX_VISIBILITY_TIMEOUT = 43_200  # 12 hours
MAX_DELAY_SECONDS = 900
MAX_WAIT_TIME_SECONDS = 20
MAX_MESSAGE_SIZE = 1_048_576  # 1 MiB since AWS raised it from 256 KiB in 2025
MIN_MESSAGE_SIZE_LIMIT = 1_024
MIN_RETENTION = 60
MAX_RETENTION = 1_209_600  # 14 days
DEFAULT_RETENTION = 345_600  # 4 days
DEDUPLICATION_WINDOW = 300.0  # 5 minutes
MAX_BATCH_ENTRIES = 10
MAX_RECEIVE_COUNT_LIMIT = 1_000

# (minimum, maximum, default) of the integer attributes a queue can be created with.
_INTEGER_ATTRIBUTES: dict[str, tuple[int, int, int]] = {
    "DelaySeconds": (0, MAX_DELAY_SECONDS, 0),
    "MaximumMessageSize": (MIN_MESSAGE_SIZE_LIMIT, MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE),
    "MessageRetentionPeriod": (MIN_RETENTION, MAX_RETENTION, DEFAULT_RETENTION),
    "ReceiveMessageWaitTimeSeconds": (0, MAX_WAIT_TIME_SECONDS, 0),
    "VisibilityTimeout": (0, MAX_VISIBILITY_TIMEOUT, 30),
    "KmsDataKeyReusePeriodSeconds": (60, 86_400, 300),
}
_BOOLEAN_ATTRIBUTES = {"ContentBasedDeduplication", "SqsManagedSseEnabled", "FifoQueue"}
_FREE_ATTRIBUTES = {"Policy", "KmsMasterKeyId", "RedriveAllowPolicy"}
_FIFO_ONLY = {"ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
_ENUM_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "DeduplicationScope": ("messageGroup", "queue"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
}
SETTABLE = (
    set(_INTEGER_ATTRIBUTES)
    | _BOOLEAN_ATTRIBUTES
    | _FREE_ATTRIBUTES
    | set(_ENUM_ATTRIBUTES)
    | {"RedrivePolicy"}
)
COMPUTED = {
    "All",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
}
READABLE = SETTABLE | COMPUTED


@dataclass(frozen=True, slots=True)
class RedrivePolicy:
    dead_letter_target_arn: str
    max_receive_count: int

    @property
    def target_name(self) -> str:
        return self.dead_letter_target_arn.rsplit(":", 1)[-1]


def _invalid_value(name: str, reason: str = "") -> SqsError:
    suffix = f" Reason: {reason}" if reason else ""
    return SqsError("InvalidAttributeValue", f"Invalid value for the parameter {name}.{suffix}")


def parse_redrive_policy(raw: str) -> RedrivePolicy:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _invalid_value("RedrivePolicy", "Redrive policy is not a valid JSON map.") from exc
    if not isinstance(data, dict):
        raise _invalid_value("RedrivePolicy", "Redrive policy is not a valid JSON map.")
    arn = data.get("deadLetterTargetArn")
    count = data.get("maxReceiveCount")
    if not isinstance(arn, str) or count is None:
        raise _invalid_value(
            "RedrivePolicy",
            "Redrive policy does not contain mandatory attribute: "
            + ("deadLetterTargetArn" if not isinstance(arn, str) else "maxReceiveCount"),
        )
    try:
        max_receive_count = int(count)
    except (TypeError, ValueError) as exc:
        raise _invalid_value("RedrivePolicy", "Invalid value for maxReceiveCount.") from exc
    if not 1 <= max_receive_count <= MAX_RECEIVE_COUNT_LIMIT:
        raise _invalid_value(
            "RedrivePolicy",
            f"Invalid value for maxReceiveCount: {count}, valid values are from 1 to 1000 both "
            "inclusive.",
        )
    return RedrivePolicy(arn, max_receive_count)


def _bool_text(name: str, value: str) -> str:
    lowered = value.lower()
    if lowered not in {"true", "false"}:
        raise _invalid_value(name)
    return lowered


def normalise(attributes: Mapping[str, Any], *, fifo: bool, creating: bool) -> dict[str, str]:
    """Validate requested attribute values and return them as SQS stores them (strings)."""
    out: dict[str, str] = {}
    for name, raw in attributes.items():
        value = str(raw)
        if name not in SETTABLE or (name == "FifoQueue" and not creating):
            raise SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")
        if name in _FIFO_ONLY and not fifo:
            raise SqsError(
                "InvalidAttributeName",
                f"You can specify the {name} only when FifoQueue is set to true.",
            )
        if name in _INTEGER_ATTRIBUTES:
            low, high, _default = _INTEGER_ATTRIBUTES[name]
            try:
                number = int(value)
            except ValueError as exc:
                raise _invalid_value(name) from exc
            if not low <= number <= high:
                raise _invalid_value(name, f"must be between {low} and {high}")
            out[name] = str(number)
        elif name in _BOOLEAN_ATTRIBUTES:
            out[name] = _bool_text(name, value)
        elif name in _ENUM_ATTRIBUTES:
            if value not in _ENUM_ATTRIBUTES[name]:
                raise _invalid_value(name)
            out[name] = value
        elif name == "RedrivePolicy":
            if value:
                parse_redrive_policy(value)
            out[name] = value
        else:
            out[name] = value
    return out


def defaults(*, fifo: bool) -> dict[str, str]:
    values = {name: str(spec[2]) for name, spec in _INTEGER_ATTRIBUTES.items()}
    del values["KmsDataKeyReusePeriodSeconds"]
    values["SqsManagedSseEnabled"] = "true"
    if fifo:
        values["FifoQueue"] = "true"
        values["ContentBasedDeduplication"] = "false"
        values["DeduplicationScope"] = "queue"
        values["FifoThroughputLimit"] = "perQueue"
    return values


def check_throughput_combination(values: Mapping[str, str]) -> None:
    """``FifoThroughputLimit=perMessageGroupId`` needs ``DeduplicationScope=messageGroup``."""
    if (
        values.get("FifoThroughputLimit") == "perMessageGroupId"
        and values.get("DeduplicationScope") != "messageGroup"
    ):
        raise _invalid_value(
            "FifoThroughputLimit",
            "The perMessageGroupId value is allowed only when the value for DeduplicationScope "
            "is messageGroup.",
        )
