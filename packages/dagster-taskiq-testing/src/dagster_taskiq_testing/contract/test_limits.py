"""Limits: 10 per receive or batch, message size, body characters, batch rules."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from dagster_taskiq_testing.contract._helpers import (
    AWS_BODY_CHARS,
    AWS_BODY_MIN,
    AWS_LONG_POLL_MAX,
    AWS_MAX_SIZE,
    AWS_QUEUE_DELAY_RANGE,
    error_code,
)
from dagster_taskiq_testing.sqs_emulators import LOCALSTACK, MOTO, SqsEmulator

ONE_MIB = 1_048_576


def test_receive_returns_at_most_ten_messages(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("ten")
    for start in (0, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, start + 10)],
        )
    response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    assert 1 <= len(response["Messages"]) <= 10
    with pytest.raises(ClientError) as excinfo:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert error_code(excinfo) == "InvalidParameterValue"


def test_batch_of_more_than_ten_entries_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("batch11")
    with pytest.raises(ClientError) as excinfo:
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "m"} for i in range(11)]
        )
    assert error_code(excinfo) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"


def test_batch_entry_ids_must_be_distinct(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("batchdup")
    with pytest.raises(ClientError) as excinfo:
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}]
        )
    assert error_code(excinfo) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"


def test_empty_batch_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("batchempty")
    with pytest.raises(ClientError) as excinfo:
        sqs.delete_message_batch(QueueUrl=url, Entries=[])
    assert error_code(excinfo) == "AWS.SimpleQueueService.EmptyBatchRequest"


def test_batch_entry_id_format(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("batchid")
    with pytest.raises(ClientError) as excinfo:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a b", "MessageBody": "x"}])
    assert error_code(excinfo) == "AWS.SimpleQueueService.InvalidBatchEntryId"


def test_body_larger_than_maximum_message_size_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("small", MaximumMessageSize=1024)
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1024)
    with pytest.raises(ClientError) as excinfo:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1025)
    assert error_code(excinfo) == "InvalidParameterValue"


def test_body_over_one_mib_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("over-mib")
    with pytest.raises(ClientError) as excinfo:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (ONE_MIB + 1))
    assert error_code(excinfo) == "InvalidParameterValue"


@pytest.mark.sqs_deviation(LOCALSTACK, reason=AWS_MAX_SIZE)
def test_default_maximum_message_size_is_one_mib(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("mib")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
    assert attributes["Attributes"]["MaximumMessageSize"] == str(ONE_MIB)
    body = "x" * ONE_MIB
    sqs.send_message(QueueUrl=url, MessageBody=body)
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == body


@pytest.mark.sqs_deviation(MOTO, reason=AWS_BODY_CHARS)
def test_body_with_characters_outside_the_allowed_set_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("chars")
    with pytest.raises(ClientError) as excinfo:
        sqs.send_message(QueueUrl=url, MessageBody="bad \x01 byte")
    assert error_code(excinfo) == "InvalidMessageContents"


@pytest.mark.sqs_deviation(MOTO, reason=AWS_BODY_MIN)
@pytest.mark.sqs_deviation(LOCALSTACK, reason=AWS_BODY_MIN)
def test_empty_body_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("empty")
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=url, MessageBody="")


@pytest.mark.sqs_deviation(LOCALSTACK, reason=AWS_LONG_POLL_MAX)
def test_wait_time_above_20_seconds_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("wait21")
    with pytest.raises(ClientError) as excinfo:
        sqs.receive_message(QueueUrl=url, WaitTimeSeconds=21)
    assert error_code(excinfo) == "InvalidParameterValue"


@pytest.mark.sqs_deviation(MOTO, reason=AWS_QUEUE_DELAY_RANGE)
@pytest.mark.sqs_deviation(LOCALSTACK, reason=AWS_QUEUE_DELAY_RANGE)
def test_delay_above_15_minutes_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    with pytest.raises(ClientError) as excinfo:
        sqs.create_queue(QueueName=emulator.queue_name("delay"), Attributes={"DelaySeconds": "901"})
    assert error_code(excinfo) == "InvalidAttributeValue"
