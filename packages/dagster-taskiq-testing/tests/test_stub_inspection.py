"""The stub's test-facing helpers: message views by state, DLQ contents, call log, reset."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from dagster_taskiq_testing import (
    DagsterTaskIQTestingError,
    FakeClock,
    InMemorySqs,
    MessageState,
)


def test_messages_by_state(sqs_stub: InMemorySqs, sqs_clock: FakeClock) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="visible")
    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=60)
    sqs.send_message(QueueUrl=url, MessageBody="taken")
    sqs.receive_message(QueueUrl=url)  # takes "visible" (oldest first in the stub)
    assert [m.body for m in sqs_stub.visible_messages("work")] == ["taken"]
    assert [m.body for m in sqs_stub.delayed_messages(url)] == ["delayed"]
    in_flight = sqs_stub.in_flight_messages("work")
    assert [(m.body, m.receive_count) for m in in_flight] == [("visible", 1)]
    assert in_flight[0].visible_at == sqs_clock.now() + 30
    assert {m.state for m in sqs_stub.messages("work")} == set(MessageState)
    sqs_clock.advance(60)
    assert sorted(m.body for m in sqs_stub.messages("work", "visible")) == [
        "delayed",
        "taken",
        "visible",
    ]


def test_dead_letter_messages(sqs_stub: InMemorySqs, sqs_clock: FakeClock) -> None:
    sqs = sqs_stub.client()
    dlq = sqs.create_queue(QueueName="dead")["QueueUrl"]
    arn = sqs_stub.queue_attributes("dead")["QueueArn"]
    url = sqs.create_queue(
        QueueName="work",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1})
        },
    )["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    sqs.receive_message(QueueUrl=url)
    sqs_clock.advance(31)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    dead = sqs_stub.dead_letter_messages("work")
    assert [(m.body, m.dead_letter_source_arn) for m in dead] == [
        ("poison", sqs_stub.queue_attributes("work")["QueueArn"])
    ]
    assert sqs_stub.dead_letter_queue_name("work") == "dead"
    message = sqs.receive_message(QueueUrl=dlq, MessageSystemAttributeNames=["All"])["Messages"]
    assert message[0]["Attributes"]["DeadLetterQueueSourceArn"].endswith(":work")
    with pytest.raises(DagsterTaskIQTestingError):
        sqs_stub.dead_letter_messages("dead")


def test_call_log_records_calls_and_errors(sqs_stub: InMemorySqs) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="log")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    with pytest.raises(ClientError):
        sqs.get_queue_url(QueueName="missing")
    sqs.receive_message(QueueUrl=url)
    operations = [(c.operation, c.error_code) for c in sqs_stub.calls]
    assert operations == [
        ("create_queue", None),
        ("send_message", None),
        ("get_queue_url", "AWS.SimpleQueueService.NonExistentQueue"),
        ("receive_message", None),
    ]
    sent = sqs_stub.calls_to("send_message")[0]
    assert sent.params == {"QueueUrl": url, "MessageBody": "m"}
    assert sent.ok
    assert sent.response is not None
    sqs_stub.clear_calls()
    assert sqs_stub.calls == []


def test_reset_forgets_queues_and_calls(sqs_stub: InMemorySqs) -> None:
    sqs = sqs_stub.client()
    sqs.create_queue(QueueName="a")
    sqs_stub.reset()
    assert sqs_stub.queue_names() == []
    assert sqs_stub.calls == []
    sqs.create_queue(QueueName="a")  # no 60-second cooldown after a reset
    assert sqs_stub.queue_names() == ["a"]


def test_bad_parameters_raise_botocore_param_validation_error(sqs_stub: InMemorySqs) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="p")["QueueUrl"]
    with pytest.raises(ParamValidationError):
        sqs.send_message(QueueUrl=url)
    with pytest.raises(ParamValidationError):
        sqs.send_message(QueueUrl=url, MessageBody="m", NoSuchParameter=1)
    with pytest.raises(ParamValidationError):
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages="3")
    with pytest.raises(ParamValidationError):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"MessageBody": "no id"}])


def test_inspecting_an_unknown_queue_raises(sqs_stub: InMemorySqs) -> None:
    with pytest.raises(DagsterTaskIQTestingError, match="no queue named"):
        sqs_stub.messages("nope")
