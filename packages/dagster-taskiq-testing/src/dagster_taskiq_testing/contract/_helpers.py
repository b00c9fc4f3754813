"""Small helpers shared by the contract tests."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

# AWS documentation sentences quoted by the deviation markers.
AWS_DEDUP = (
    "AWS: 'If a message with a particular message deduplication ID is sent successfully, any "
    "messages sent with the same message deduplication ID are accepted successfully but aren't "
    "delivered during the 5-minute deduplication interval.' and 'Amazon SQS continues to keep "
    "track of the message deduplication ID even after the message is received and deleted.'"
)
AWS_DEDUP_SCOPE = (
    "AWS: 'DeduplicationScope - Specifies whether message deduplication occurs at the message "
    "group or queue level. Valid values are messageGroup and queue.'"
)
AWS_MAX_SIZE = (
    "AWS: 'MaximumMessageSize - The limit of how many bytes a message can contain before Amazon "
    "SQS rejects it. Valid values: An integer from 1,024 bytes (1 KiB) up to 1,048,576 bytes "
    "(1 MiB). Default: 1,048,576 bytes (1 MiB).' (older emulators keep 256 KiB)"
)
AWS_VISIBILITY_MAX = (
    "AWS: 'The default visibility timeout for a message is 30 seconds. The minimum is 0 seconds. "
    "The maximum is 12 hours.'"
)
AWS_QUEUE_VISIBILITY_RANGE = (
    "AWS CreateQueue: 'VisibilityTimeout - The visibility timeout for the queue, in seconds. "
    "Valid values: An integer from 0 to 43,200 (12 hours).'"
)
AWS_QUEUE_DELAY_RANGE = (
    "AWS CreateQueue: 'DelaySeconds - The length of time, in seconds, for which the delivery of "
    "all messages in the queue is delayed. Valid values: An integer from 0 to 900 seconds (15 "
    "minutes).'"
)
AWS_SEQUENCE_NUMBER = (
    "AWS: 'SequenceNumber - The large, non-consecutive number that Amazon SQS assigns to each "
    "message. [...] SequenceNumber continues to increase for a particular MessageGroupId.'"
)
AWS_LONG_POLL_MAX = "AWS: 'The maximum long polling wait time is 20 seconds.'"
AWS_BODY_CHARS = (
    "AWS: 'A message can include only XML, JSON, and unformatted text. The following Unicode "
    "characters are allowed: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to "
    "#x10FFFF. Any characters not included in this list are rejected.'"
)
AWS_BODY_MIN = (
    "AWS SendMessage: 'MessageBody - The message to send. The minimum size is one character.'"
)
AWS_DEDUP_ID_LENGTH = "AWS: 'The maximum length of MessageDeduplicationId is 128 characters.'"


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = excinfo.value.response["Error"]["Code"]
    return code


def receive_bodies(
    sqs: Any, url: str, expected: int, *, attempts: int = 10, **kwargs: Any
) -> list[dict[str, Any]]:
    """Receive until ``expected`` messages arrived (standard queues may return fewer per call)."""
    got: list[dict[str, Any]] = []
    for _ in range(attempts):
        response = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=min(10, max(1, expected - len(got))), **kwargs
        )
        got.extend(response.get("Messages", []))
        if len(got) >= expected:
            break
    return got


def attribute(sqs: Any, url: str, name: str) -> int:
    value = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"][name]
    return int(value)


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
