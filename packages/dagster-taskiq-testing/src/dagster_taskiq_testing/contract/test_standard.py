"""Standard queues: delays, counts, retention, dead-letter queues, purge."""

from __future__ import annotations

import json

import pytest

from dagster_taskiq_testing.contract._helpers import attribute, receive_bodies
from dagster_taskiq_testing.sqs_emulators import SqsEmulator


def test_per_message_delay_hides_the_message_until_it_ends(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("delay")
    sqs.send_message(QueueUrl=url, MessageBody="late", DelaySeconds=1)
    sqs.send_message(QueueUrl=url, MessageBody="now")
    assert [m["Body"] for m in receive_bodies(sqs, url, 1)] == ["now"]
    assert attribute(sqs, url, "ApproximateNumberOfMessagesDelayed") == 1
    emulator.pass_time(1.5)
    assert [m["Body"] for m in receive_bodies(sqs, url, 1)] == ["late"]


def test_queue_delay_applies_to_every_message(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("queue-delay", DelaySeconds=1)
    sqs.send_message(QueueUrl=url, MessageBody="m")
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    emulator.pass_time(1.5)
    assert [m["Body"] for m in receive_bodies(sqs, url, 1)] == ["m"]


def test_per_message_delay_overrides_the_queue_delay(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("delay-override", DelaySeconds=600)
    sqs.send_message(QueueUrl=url, MessageBody="m", DelaySeconds=0)
    assert [m["Body"] for m in receive_bodies(sqs, url, 1)] == ["m"]


def test_approximate_counts_by_state(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("counts")
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.send_message(QueueUrl=url, MessageBody="d", DelaySeconds=600)
    assert len(receive_bodies(sqs, url, 1)) == 1
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    assert attributes == {
        "ApproximateNumberOfMessages": "2",
        "ApproximateNumberOfMessagesNotVisible": "1",
        "ApproximateNumberOfMessagesDelayed": "1",
    }


def test_dead_letter_queue_receives_the_message_after_max_receive_count(
    emulator: SqsEmulator,
) -> None:
    sqs = emulator.client()
    dlq_url = emulator.create_queue("dlq")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = emulator.create_queue("source", VisibilityTimeout=1, RedrivePolicy=policy)
    sent = sqs.send_message(QueueUrl=url, MessageBody="poison")
    for expected_count in ("1", "2"):
        message = receive_bodies(sqs, url, 1, AttributeNames=["ApproximateReceiveCount"])
        assert message[0]["Attributes"]["ApproximateReceiveCount"] == expected_count
        emulator.pass_time(1.5)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    dead = receive_bodies(sqs, dlq_url, 1)
    assert [(m["MessageId"], m["Body"]) for m in dead] == [(sent["MessageId"], "poison")]


def test_fifo_dead_letter_queue(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    dlq_url = emulator.create_queue("dlq", fifo=True)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    url = emulator.create_queue("source", fifo=True, VisibilityTimeout=1, RedrivePolicy=policy)
    for body in ("p", "q"):
        sqs.send_message(
            QueueUrl=url, MessageBody=body, MessageGroupId="g", MessageDeduplicationId=body
        )
    first = sqs.receive_message(QueueUrl=url)["Messages"]
    assert [m["Body"] for m in first] == ["p"]
    emulator.pass_time(1.5)
    after = sqs.receive_message(QueueUrl=url)["Messages"]
    assert [m["Body"] for m in after] == ["q"]
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=dlq_url)["Messages"]] == ["p"]


@pytest.mark.sqs_fake_time("waits out the minimum retention period of 60 seconds")
def test_messages_older_than_the_retention_period_are_dropped(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("retention", MessageRetentionPeriod=60)
    sqs.send_message(QueueUrl=url, MessageBody="old")
    emulator.pass_time(30)
    sqs.send_message(QueueUrl=url, MessageBody="young")
    emulator.pass_time(31)
    assert [m["Body"] for m in receive_bodies(sqs, url, 1)] == ["young"]
    assert attribute(sqs, url, "ApproximateNumberOfMessages") == 0


def test_purge_queue_deletes_every_message(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("purge")
    sqs.send_message(QueueUrl=url, MessageBody="a")
    sqs.send_message(QueueUrl=url, MessageBody="b")
    assert len(receive_bodies(sqs, url, 1)) == 1
    sqs.purge_queue(QueueUrl=url)
    assert attribute(sqs, url, "ApproximateNumberOfMessages") == 0
    assert attribute(sqs, url, "ApproximateNumberOfMessagesNotVisible") == 0
