"""Request checks SQS makes server-side: message contents, ids, batches, ranges."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from dagster_taskiq_testing._attributes import MAX_BATCH_ENTRIES, MAX_MESSAGE_SIZE
from dagster_taskiq_testing._errors import SqsError, invalid_parameter

_INVALID_BODY_CHARS = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
_GROUP_OR_DEDUP_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_FIFO_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")
MAX_MESSAGE_ATTRIBUTES = 10


def check_queue_name(name: str, *, fifo: bool) -> None:
    if fifo:
        if not _FIFO_QUEUE_NAME.fullmatch(name):
            raise invalid_parameter(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or "
                "underscores, must end with .fifo suffix and be 1 to 80 in length"
            )
    elif not _QUEUE_NAME.fullmatch(name):
        raise invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )


def check_body(body: str) -> None:
    if not body:
        raise SqsError(
            "MissingRequiredParameterException",
            "The request must contain the parameter MessageBody.",
        )
    bad = _INVALID_BODY_CHARS.search(body)
    if bad is not None:
        raise SqsError(
            "InvalidMessageContents",
            f"Invalid binary character '#x{ord(bad.group()):X}' was found in the message body, the "
            "set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | "
            "#x10000 to #x10FFFF",
        )


def check_group_or_dedup_id(parameter: str, value: str) -> None:
    if not _GROUP_OR_DEDUP_ID.fullmatch(value):
        raise invalid_parameter(
            f"Value {value} for parameter {parameter} is invalid. Reason: {parameter} can only "
            "include alphanumeric and punctuation characters. 1 to 128 in length."
        )


def check_range(parameter: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise invalid_parameter(
            f"Value {value} for parameter {parameter} is invalid. Reason: Must be between "
            f"{low} and {high}, if provided."
        )


def normalise_message_attributes(
    attributes: Mapping[str, Any] | None,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Validated message attributes (binary values as bytes) and their size in bytes."""
    if not attributes:
        return {}, 0
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise invalid_parameter(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum "
            f"[{MAX_MESSAGE_ATTRIBUTES}]."
        )
    out: dict[str, dict[str, Any]] = {}
    size = 0
    for name, value in attributes.items():
        lowered = name.lower()
        if (
            not _ATTRIBUTE_NAME.fullmatch(name)
            or lowered.startswith(("aws.", "amazon."))
            or ".." in name
            or name.startswith(".")
            or name.endswith(".")
        ):
            raise invalid_parameter(f"Message attribute name '{name}' is invalid.")
        data_type = value.get("DataType")
        if not data_type:
            raise invalid_parameter(
                f"The message attribute '{name}' must contain a non-empty data type."
            )
        base = data_type.split(".", 1)[0]
        stored: dict[str, Any] = {"DataType": data_type}
        if base in {"String", "Number"}:
            text = value.get("StringValue")
            if text is None or text == "":
                raise invalid_parameter(
                    f"The message attribute '{name}' must contain a non-empty message attribute "
                    f"value for message attribute type '{base}'."
                )
            if base == "Number":
                try:
                    float(text)
                except ValueError as exc:
                    raise invalid_parameter(
                        f"Can't cast the value of message (user) attribute '{name}' to a number."
                    ) from exc
            stored["StringValue"] = str(text)
            size += len(str(text).encode("utf-8"))
        elif base == "Binary":
            raw = value.get("BinaryValue")
            if raw is None or raw == b"":
                raise invalid_parameter(
                    f"The message attribute '{name}' must contain a non-empty message attribute "
                    "value for message attribute type 'Binary'."
                )
            data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
            stored["BinaryValue"] = data
            size += len(data)
        else:
            raise invalid_parameter(
                f"The type of message (user) attribute '{name}' is invalid. You must use only the "
                "following supported type prefixes: Binary, Number, String."
            )
        size += len(name.encode("utf-8")) + len(data_type.encode("utf-8"))
        out[name] = stored
    return out, size


def check_batch(entries: Sequence[Mapping[str, Any]], entry_kind: str) -> None:
    """Whole-request batch checks, in the order SQS applies them."""
    if not entries:
        raise SqsError(
            "EmptyBatchRequest", f"There should be at least one {entry_kind} in the request."
        )
    if len(entries) > MAX_BATCH_ENTRIES:
        raise SqsError(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH_ENTRIES}. "
            f"You have sent {len(entries)}.",
        )
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry["Id"]
        if entry_id in seen:
            raise SqsError("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
        seen.add(entry_id)
    for entry in entries:
        if not _BATCH_ID.fullmatch(entry["Id"]):
            raise SqsError(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long.",
            )


def check_batch_size(total: int) -> None:
    if total > MAX_MESSAGE_SIZE:
        raise SqsError(
            "BatchRequestTooLong",
            f"Batch requests cannot be longer than {MAX_MESSAGE_SIZE} bytes. "
            f"You have sent {total} bytes.",
        )
