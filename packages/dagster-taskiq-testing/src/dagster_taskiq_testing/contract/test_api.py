"""The API surface: queue lookup, errors, response shapes, batches, attributes, MD5s."""

from __future__ import annotations

import hashlib
import time

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from dagster_taskiq_testing.contract._helpers import error_code, receive_bodies
from dagster_taskiq_testing.sqs_emulators import SqsEmulator


def test_unknown_queue_is_reported_with_the_aws_error_code(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as excinfo:
        sqs.get_queue_url(QueueName=emulator.queue_name("missing"))
    assert error_code(excinfo) == "AWS.SimpleQueueService.NonExistentQueue"
    assert excinfo.value.response["Error"]["QueryErrorCode"] == "QueueDoesNotExist"
    url = emulator.create_queue("present")
    missing_url = url.rsplit("/", 1)[0] + "/" + emulator.queue_name("gone")
    with pytest.raises(ClientError) as send_error:
        sqs.send_message(QueueUrl=missing_url, MessageBody="m")
    assert error_code(send_error) == "AWS.SimpleQueueService.NonExistentQueue"


def test_get_queue_url_finds_a_created_queue(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    name = emulator.queue_name("lookup")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert url.endswith("/" + name)
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]


def test_create_queue_is_idempotent_for_equal_attributes_only(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    name = emulator.queue_name("idem")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    again = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "5"})
    assert again["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists) as excinfo:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "6"})
    assert error_code(excinfo) == "QueueAlreadyExists"


def test_send_and_receive_response_shapes(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("shapes")
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello")
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"hello", usedforsecurity=False).hexdigest()
    assert sent["ResponseMetadata"]["HTTPStatusCode"] == 200
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    assert set(message) == {"MessageId", "ReceiptHandle", "MD5OfBody", "Body"}
    assert message["MessageId"] == sent["MessageId"]
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    empty = sqs.receive_message(QueueUrl=url)
    assert "Messages" not in empty


def test_message_attributes_round_trip_with_their_md5(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("mattrs")
    attributes = {
        "kind": {"DataType": "String", "StringValue": "step"},
        "attempt": {"DataType": "Number", "StringValue": "3"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }
    sent = sqs.send_message(QueueUrl=url, MessageBody="m", MessageAttributes=attributes)
    message = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]


def test_system_attributes_of_a_received_message(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("sysattrs", VisibilityTimeout=1)
    before = int(time.time() * 1000) if not emulator.fake_time else None
    sqs.send_message(QueueUrl=url, MessageBody="m")
    first = receive_bodies(sqs, url, 1, MessageSystemAttributeNames=["All"])[0]["Attributes"]
    assert {"SenderId", "SentTimestamp", "ApproximateReceiveCount"} <= set(first)
    assert first["ApproximateReceiveCount"] == "1"
    assert int(first["ApproximateFirstReceiveTimestamp"]) >= int(first["SentTimestamp"])
    if before is not None:
        assert int(first["SentTimestamp"]) >= before - 2000
    emulator.pass_time(1.5)
    second = receive_bodies(sqs, url, 1, MessageSystemAttributeNames=["All"])[0]["Attributes"]
    assert second["ApproximateReceiveCount"] == "2"
    assert second["ApproximateFirstReceiveTimestamp"] == first["ApproximateFirstReceiveTimestamp"]
    assert second["SentTimestamp"] == first["SentTimestamp"]


def test_send_message_batch_reports_each_entry(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("batch")
    response = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": "a", "MessageBody": "x"}, {"Id": "b", "MessageBody": "y"}],
    )
    assert sorted(entry["Id"] for entry in response["Successful"]) == ["a", "b"]
    assert not response.get("Failed")
    messages = receive_bodies(sqs, url, 2)
    assert sorted(m["Body"] for m in messages) == ["x", "y"]
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ],
    )
    assert sorted(entry["Id"] for entry in deleted["Successful"]) == ["d0", "d1"]
    assert (
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessagesNotVisible"
        ]
        == "0"
    )


def test_batch_failures_are_reported_per_entry(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("batchfail")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    good = receive_bodies(sqs, url, 1)[0]["ReceiptHandle"]
    response = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "good", "ReceiptHandle": good, "VisibilityTimeout": 0},
            {"Id": "bad", "ReceiptHandle": "garbage", "VisibilityTimeout": 0},
        ],
    )
    assert [entry["Id"] for entry in response["Successful"]] == ["good"]
    assert [(e["Id"], e["Code"]) for e in response["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]
    assert receive_bodies(sqs, url, 1)


def test_delete_queue_removes_it(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    name = emulator.queue_name("deleted")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(ClientError) as excinfo:
        sqs.get_queue_url(QueueName=name)
    assert error_code(excinfo) == "AWS.SimpleQueueService.NonExistentQueue"


def test_unknown_queue_attribute_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("badattr")
    with pytest.raises(ClientError) as excinfo:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["NoSuchAttribute"])
    assert error_code(excinfo) == "InvalidAttributeName"
