"""Stub semantics the contract suite cannot check on real servers in reasonable time."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from dagster_taskiq_testing import FakeClock, InMemorySqs


def _code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = excinfo.value.response["Error"]["Code"]
    return code


def test_queue_name_cannot_be_reused_for_60_seconds(
    sqs_stub: InMemorySqs, sqs_clock: FakeClock
) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDeletedRecently) as excinfo:
        sqs.create_queue(QueueName="q")
    assert _code(excinfo) == "AWS.SimpleQueueService.QueueDeletedRecently"
    sqs_clock.advance(60)
    assert sqs.create_queue(QueueName="q")["QueueUrl"] == url


def test_purge_is_allowed_once_per_60_seconds(sqs_stub: InMemorySqs, sqs_clock: FakeClock) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.purge_queue(QueueUrl=url)
    with pytest.raises(ClientError) as excinfo:
        sqs.purge_queue(QueueUrl=url)
    assert _code(excinfo) == "AWS.SimpleQueueService.PurgeQueueInProgress"
    sqs_clock.advance(60)
    sqs.purge_queue(QueueUrl=url)


def test_change_visibility_of_a_message_no_longer_in_flight(
    sqs_stub: InMemorySqs, sqs_clock: FakeClock
) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    sqs_clock.advance(31)
    with pytest.raises(ClientError) as excinfo:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=10)
    assert _code(excinfo) == "AWS.SimpleQueueService.MessageNotInflight"
    # Its handle is still the latest one, so it still deletes the message.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
    assert sqs_stub.messages("q") == []


def test_handle_of_another_queue_is_invalid(sqs_stub: InMemorySqs) -> None:
    sqs = sqs_stub.client()
    first = sqs.create_queue(QueueName="a")["QueueUrl"]
    second = sqs.create_queue(QueueName="b")["QueueUrl"]
    sqs.send_message(QueueUrl=first, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=first)["Messages"][0]["ReceiptHandle"]
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=second, ReceiptHandle=handle)


def test_fifo_receive_fills_from_one_group_first(sqs_stub: InMemorySqs) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(
        QueueName="q.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    for body, group in (("a1", "a"), ("b1", "b"), ("a2", "a"), ("b2", "b")):
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3)["Messages"]
    assert [m["Body"] for m in received] == ["a1", "a2", "b1"]


def test_fifo_queue_delay_applies_and_keeps_order(
    sqs_stub: InMemorySqs, sqs_clock: FakeClock
) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(
        QueueName="d.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true", "DelaySeconds": "5"},
    )["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="one", MessageGroupId="g")
    sqs.send_message(QueueUrl=url, MessageBody="two", MessageGroupId="g")
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs_clock.advance(5)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in received] == ["one", "two"]


def test_throughput_limit_per_group_needs_group_scope(sqs_stub: InMemorySqs) -> None:
    sqs = sqs_stub.client()
    with pytest.raises(ClientError) as excinfo:
        sqs.create_queue(
            QueueName="t.fifo",
            Attributes={"FifoQueue": "true", "FifoThroughputLimit": "perMessageGroupId"},
        )
    assert _code(excinfo) == "InvalidAttributeValue"


def test_list_queues_paginates(sqs_stub: InMemorySqs) -> None:
    sqs = sqs_stub.client()
    for name in ("a1", "a2", "a3", "b1"):
        sqs.create_queue(QueueName=name)
    first = sqs.list_queues(QueueNamePrefix="a", MaxResults=2)
    assert [u.rsplit("/", 1)[1] for u in first["QueueUrls"]] == ["a1", "a2"]
    rest = sqs.list_queues(QueueNamePrefix="a", MaxResults=2, NextToken=first["NextToken"])
    assert [u.rsplit("/", 1)[1] for u in rest["QueueUrls"]] == ["a3"]
    assert "NextToken" not in rest


def test_tags_and_dead_letter_sources(sqs_stub: InMemorySqs) -> None:
    sqs = sqs_stub.client()
    dlq = sqs.create_queue(QueueName="dead", tags={"team": "data"})["QueueUrl"]
    arn = sqs_stub.queue_attributes("dead")["QueueArn"]
    src = sqs.create_queue(
        QueueName="src",
        Attributes={"RedrivePolicy": f'{{"deadLetterTargetArn": "{arn}", "maxReceiveCount": 3}}'},
    )["QueueUrl"]
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]
    sqs.tag_queue(QueueUrl=dlq, Tags={"env": "test"})
    sqs.untag_queue(QueueUrl=dlq, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=dlq)["Tags"] == {"env": "test"}


def test_message_attribute_name_filters(sqs_stub: InMemorySqs) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(
        QueueUrl=url,
        MessageBody="m",
        MessageAttributes={
            "step.key": {"DataType": "String", "StringValue": "a"},
            "step.try": {"DataType": "Number", "StringValue": "1"},
            "run": {"DataType": "String", "StringValue": "r"},
        },
    )
    message = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["step.*"])["Messages"][0]
    assert sorted(message["MessageAttributes"]) == ["step.key", "step.try"]


def test_real_clock_by_default_and_visibility_expires_in_real_time() -> None:
    stub = InMemorySqs()
    sqs = stub.client()
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)
    # A long poll wakes when the in-flight message becomes visible again, not at its deadline.
    again = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
    assert [m["Body"] for m in again["Messages"]] == ["m"]


def test_an_older_receipt_handle_does_not_delete_a_redelivered_message(
    sqs_stub: InMemorySqs, sqs_clock: FakeClock
) -> None:
    # AWS: "You must provide the most recently received receipt handle when you request to
    # delete the message (otherwise, the request succeeds, but the message will not be
    # deleted)." Emulators differ here, so this is a stub-only test.
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    old = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    sqs_clock.advance(30)
    new = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=old)
    assert [m.receive_count for m in sqs_stub.in_flight_messages("q")] == [2]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=new)
    assert sqs_stub.messages("q") == []
    sqs.delete_message(QueueUrl=url, ReceiptHandle=new)  # deleting twice succeeds
