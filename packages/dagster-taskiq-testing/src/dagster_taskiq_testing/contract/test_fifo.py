"""FIFO queues: naming, order and blocking per group, deduplication, no per-message delay."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from dagster_taskiq_testing._checksums import sha256_of_body
from dagster_taskiq_testing.contract._helpers import (
    AWS_DEDUP,
    AWS_DEDUP_ID_LENGTH,
    AWS_DEDUP_SCOPE,
    AWS_SEQUENCE_NUMBER,
    error_code,
)
from dagster_taskiq_testing.sqs_emulators import LOCALSTACK, MOTO, SqsEmulator


def _send(sqs: Any, url: str, body: str, group: str, dedup: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = sqs.send_message(
        QueueUrl=url,
        MessageBody=body,
        MessageGroupId=group,
        MessageDeduplicationId=dedup or body,
    )
    return response


def _bodies(response: dict[str, Any]) -> list[str]:
    return [m["Body"] for m in response.get("Messages", [])]


def test_fifo_queue_name_must_end_in_fifo(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    with pytest.raises(ClientError) as excinfo:
        sqs.create_queue(QueueName=emulator.queue_name("nofifo"), Attributes={"FifoQueue": "true"})
    assert error_code(excinfo) == "InvalidParameterValue"


def test_fifo_queue_reports_its_attributes(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue(
        "attrs",
        fifo=True,
        ContentBasedDeduplication="true",
        DeduplicationScope="messageGroup",
        FifoThroughputLimit="perMessageGroupId",
    )
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true"
    assert attributes["ContentBasedDeduplication"] == "true"
    assert attributes["DeduplicationScope"] == "messageGroup"
    assert attributes["FifoThroughputLimit"] == "perMessageGroupId"


def test_messages_of_a_group_arrive_in_order(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("order", fifo=True)
    for i in range(5):
        _send(sqs, url, f"m{i}", "g")
    seen: list[str] = []
    for _ in range(5):
        message = sqs.receive_message(QueueUrl=url)["Messages"][0]
        seen.append(message["Body"])
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert seen == [f"m{i}" for i in range(5)]


def test_a_group_is_blocked_while_one_of_its_messages_is_in_flight(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("blocked", fifo=True)
    _send(sqs, url, "a1", "a")
    _send(sqs, url, "a2", "a")
    first = sqs.receive_message(QueueUrl=url)["Messages"]
    assert _bodies({"Messages": first}) == ["a1"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    assert _bodies(sqs.receive_message(QueueUrl=url)) == ["a2"]


def test_other_groups_are_not_blocked(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("groups", fifo=True)
    _send(sqs, url, "a1", "a")
    _send(sqs, url, "a2", "a")
    _send(sqs, url, "b1", "b")
    assert _bodies(sqs.receive_message(QueueUrl=url)) == ["a1"]
    assert _bodies(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)) == ["b1"]


def test_a_released_message_is_redelivered_before_the_rest_of_its_group(
    emulator: SqsEmulator,
) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("release-order", fifo=True)
    _send(sqs, url, "a1", "a")
    _send(sqs, url, "a2", "a")
    handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    assert _bodies(sqs.receive_message(QueueUrl=url)) == ["a1"]


def test_visibility_timeout_unblocks_the_group(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("unblock", fifo=True, VisibilityTimeout=1)
    _send(sqs, url, "a1", "a")
    _send(sqs, url, "a2", "a")
    assert _bodies(sqs.receive_message(QueueUrl=url)) == ["a1"]
    emulator.pass_time(1.5)
    assert _bodies(sqs.receive_message(QueueUrl=url)) == ["a1"]


def test_duplicate_is_accepted_but_not_delivered(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("dedup", fifo=True)
    _send(sqs, url, "one", "g", dedup="d")
    _send(sqs, url, "two", "g", dedup="d")
    message = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert _bodies({"Messages": message}) == ["one"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message[0]["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)


@pytest.mark.sqs_deviation(MOTO, reason=AWS_DEDUP)
def test_duplicate_send_returns_the_original_message_id(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("dedup-id", fifo=True)
    first = _send(sqs, url, "one", "g", dedup="d")
    second = _send(sqs, url, "two", "g", dedup="d")
    assert second["MessageId"] == first["MessageId"]


@pytest.mark.sqs_deviation(MOTO, reason=AWS_DEDUP)
def test_deduplication_outlives_the_deletion_of_the_message(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("dedup-deleted", fifo=True)
    _send(sqs, url, "one", "g", dedup="d")
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    _send(sqs, url, "again", "g", dedup="d")
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)


@pytest.mark.sqs_fake_time("waits out the 5-minute deduplication interval")
def test_deduplication_window_is_five_minutes(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("dedup-window", fifo=True)
    _send(sqs, url, "one", "g", dedup="d")
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    emulator.pass_time(299)
    _send(sqs, url, "within", "g", dedup="d")
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    emulator.pass_time(2)
    _send(sqs, url, "after", "g", dedup="d")
    assert _bodies(sqs.receive_message(QueueUrl=url)) == ["after"]


def test_content_based_deduplication_uses_the_sha256_of_the_body(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("content", fifo=True, ContentBasedDeduplication="true")
    sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    sqs.send_message(QueueUrl=url, MessageBody="other", MessageGroupId="g")
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert [m["Body"] for m in messages] == ["same", "other"]
    assert messages[0]["Attributes"]["MessageDeduplicationId"] == sha256_of_body("same")


def test_fifo_send_without_deduplication_id_needs_content_based_deduplication(
    emulator: SqsEmulator,
) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("no-dedup", fifo=True)
    with pytest.raises(ClientError) as excinfo:
        sqs.send_message(QueueUrl=url, MessageBody="m", MessageGroupId="g")
    assert error_code(excinfo) == "InvalidParameterValue"


def test_fifo_send_without_group_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("no-group", fifo=True)
    with pytest.raises(ClientError) as excinfo:
        sqs.send_message(QueueUrl=url, MessageBody="m", MessageDeduplicationId="d")
    assert error_code(excinfo) == "MissingParameter"


@pytest.mark.sqs_deviation(MOTO, reason=AWS_DEDUP_SCOPE)
@pytest.mark.sqs_deviation(LOCALSTACK, reason=AWS_DEDUP_SCOPE)
def test_message_group_deduplication_scope(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue(
        "scope",
        fifo=True,
        DeduplicationScope="messageGroup",
        FifoThroughputLimit="perMessageGroupId",
    )
    _send(sqs, url, "a", "g1", dedup="d")
    _send(sqs, url, "b", "g2", dedup="d")
    _send(sqs, url, "c", "g1", dedup="d")
    bodies = sorted(_bodies(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)))
    assert bodies == ["a", "b"]


def test_queue_deduplication_scope_spans_groups(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("scope-queue", fifo=True, DeduplicationScope="queue")
    _send(sqs, url, "a", "g1", dedup="d")
    _send(sqs, url, "b", "g2", dedup="d")
    assert _bodies(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)) == ["a"]


def test_per_message_delay_is_rejected_on_fifo(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("fifo-delay", fifo=True)
    with pytest.raises(ClientError) as excinfo:
        sqs.send_message(
            QueueUrl=url,
            MessageBody="m",
            MessageGroupId="g",
            MessageDeduplicationId="d",
            DelaySeconds=5,
        )
    assert error_code(excinfo) == "InvalidParameterValue"


@pytest.mark.sqs_deviation(MOTO, reason=AWS_SEQUENCE_NUMBER)
def test_sequence_numbers_increase_within_a_group(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("seq", fifo=True)
    # Twelve sends: random numbers (moto) come out increasing with odds of 1 in 12! only.
    sent = [_send(sqs, url, f"m{i}", "g", dedup=f"d{i}") for i in range(12)]
    numbers = [int(s["SequenceNumber"]) for s in sent]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 12


def test_fifo_messages_carry_group_dedup_and_sequence_number(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("seq-attrs", fifo=True)
    sent = [_send(sqs, url, f"m{i}", "g", dedup=f"d{i}") for i in range(3)]
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert [m["Attributes"]["MessageGroupId"] for m in messages] == ["g", "g", "g"]
    assert [m["Attributes"]["MessageDeduplicationId"] for m in messages] == ["d0", "d1", "d2"]
    assert [m["Attributes"]["SequenceNumber"] for m in messages] == [
        s["SequenceNumber"] for s in sent
    ]


@pytest.mark.sqs_deviation(MOTO, reason=AWS_DEDUP_ID_LENGTH)
def test_deduplication_id_longer_than_128_characters_is_rejected(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("long-dedup", fifo=True)
    with pytest.raises(ClientError) as excinfo:
        _send(sqs, url, "m", "g", dedup="d" * 129)
    assert error_code(excinfo) == "InvalidParameterValue"
