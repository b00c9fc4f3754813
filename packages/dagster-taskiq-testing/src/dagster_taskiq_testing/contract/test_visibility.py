"""Visibility timeout, redelivery, ApproximateReceiveCount, ChangeMessageVisibility, handles."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from dagster_taskiq_testing.contract._helpers import (
    AWS_QUEUE_VISIBILITY_RANGE,
    AWS_VISIBILITY_MAX,
    error_code,
)
from dagster_taskiq_testing.sqs_emulators import LOCALSTACK, MOTO, SqsEmulator


def test_received_message_is_invisible_until_the_queue_visibility_timeout_ends(
    emulator: SqsEmulator,
) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("vis", VisibilityTimeout=1)
    sqs.send_message(QueueUrl=url, MessageBody="m")
    first = sqs.receive_message(QueueUrl=url)["Messages"]
    assert [m["Body"] for m in first] == ["m"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    emulator.pass_time(1.5)
    again = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["All"])["Messages"]
    assert [m["MessageId"] for m in again] == [first[0]["MessageId"]]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_receive_visibility_timeout_overrides_the_queue_default(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("vis-override", VisibilityTimeout=600)
    sqs.send_message(QueueUrl=url, MessageBody="m")
    assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    emulator.pass_time(1.5)
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["m"]


def test_default_visibility_timeout_is_30_seconds(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("vis-default")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert attributes["Attributes"]["VisibilityTimeout"] == "30"


@pytest.mark.sqs_fake_time("waits out the 30-second default visibility timeout")
def test_default_visibility_timeout_redelivers_after_30_seconds(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("vis-30")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    assert sqs.receive_message(QueueUrl=url)["Messages"]
    emulator.pass_time(29)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    emulator.pass_time(1.5)
    assert sqs.receive_message(QueueUrl=url)["Messages"]


def test_each_receive_returns_a_new_receipt_handle(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("handles")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"][0]
    second = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"][0]
    assert first["MessageId"] == second["MessageId"]
    assert first["ReceiptHandle"] != second["ReceiptHandle"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_change_visibility_to_zero_releases_the_message(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("release")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
    assert again["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_change_visibility_extends_the_timeout(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("extend", VisibilityTimeout=1)
    sqs.send_message(QueueUrl=url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=600)
    emulator.pass_time(1.5)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_delete_with_the_latest_handle_removes_the_message(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("delete", VisibilityTimeout=1)
    sqs.send_message(QueueUrl=url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
    emulator.pass_time(1.5)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_garbage_receipt_handle_is_invalid(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("garbage")
    with pytest.raises(ClientError) as excinfo:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-receipt-handle")
    assert error_code(excinfo) == "ReceiptHandleIsInvalid"
    with pytest.raises(ClientError) as excinfo:
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle="not-a-receipt-handle", VisibilityTimeout=5
        )
    assert error_code(excinfo) == "ReceiptHandleIsInvalid"


@pytest.mark.sqs_deviation(MOTO, reason=AWS_QUEUE_VISIBILITY_RANGE)
@pytest.mark.sqs_deviation(LOCALSTACK, reason=AWS_QUEUE_VISIBILITY_RANGE)
def test_queue_visibility_timeout_above_12_hours_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    with pytest.raises(ClientError) as excinfo:
        sqs.create_queue(
            QueueName=emulator.queue_name("vis-max"), Attributes={"VisibilityTimeout": "43201"}
        )
    assert error_code(excinfo) == "InvalidAttributeValue"


@pytest.mark.sqs_deviation(LOCALSTACK, reason=AWS_VISIBILITY_MAX)
def test_receive_visibility_timeout_above_12_hours_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("recv-vis-max")
    with pytest.raises(ClientError) as excinfo:
        sqs.receive_message(QueueUrl=url, VisibilityTimeout=43_201)
    assert error_code(excinfo) == "InvalidParameterValue"


@pytest.mark.sqs_deviation(LOCALSTACK, reason=AWS_VISIBILITY_MAX)
def test_change_visibility_above_12_hours_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("change-vis-max")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    with pytest.raises(ClientError) as excinfo:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=43_201)
    assert error_code(excinfo) == "InvalidParameterValue"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=43_000)


@pytest.mark.sqs_fake_time("needs six hours to pass")
def test_visibility_cannot_be_extended_past_12_hours_after_the_receive(
    emulator: SqsEmulator,
) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("vis-total")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=url, VisibilityTimeout=43_200)["Messages"][0][
        "ReceiptHandle"
    ]
    emulator.pass_time(6 * 3600)
    with pytest.raises(ClientError) as excinfo:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=43_200)
    assert error_code(excinfo) == "InvalidParameterValue"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=6 * 3600)
