"""FIFO group and deduplication ids, URL rewriting, and the ids the broker really sends."""

from __future__ import annotations

import hashlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dagster_taskiq.messaging import LABEL_IDEMPOTENCY_KEY, deduplication_id
from dagster_taskiq_sqs import GroupStrategy
from dagster_taskiq_sqs.endpoints import rewrite_queue_url
from dagster_taskiq_sqs.message_ids import (
    SINGLE_GROUP_ID,
    StepLabels,
    message_deduplication_id,
    message_group_id,
    sqs_id,
)

_ALLOWED = set(string.ascii_letters + string.digits + string.punctuation)
_STEP = {
    "dagster_taskiq_key": "run-1:op_a[x]",
    "dagster_taskiq_run_id": "run-1",
    "dagster_taskiq_step_key": "op_a[x]",
    "dagster_taskiq_retry_number": 2,
    "dagster_taskiq_enqueue_attempt": 3,
}


def test_group_per_step_is_the_idempotency_key() -> None:
    step = StepLabels(_STEP)
    assert message_group_id(GroupStrategy.PER_STEP, step, _STEP, "t") == "run-1:op_a[x]"


def test_group_per_run_is_the_run_id() -> None:
    step = StepLabels(_STEP)
    assert message_group_id(GroupStrategy.PER_RUN, step, _STEP, "t") == "run-1"


def test_single_group() -> None:
    step = StepLabels(_STEP)
    assert message_group_id(GroupStrategy.SINGLE, step, _STEP, "t") == SINGLE_GROUP_ID


def test_plain_task_gets_its_own_group_or_its_group_id_label_never_its_name() -> None:
    plain = StepLabels({})
    assert message_group_id(GroupStrategy.PER_STEP, plain, {}, "task-1") == "task-1"
    assert message_group_id(GroupStrategy.PER_RUN, plain, {}, "task-1") == "task-1"
    labels = {"group_id": "mine"}
    assert message_group_id(GroupStrategy.PER_STEP, plain, labels, "task-1") == "mine"


def test_deduplication_id_is_the_sha256_of_the_step_identity() -> None:
    step = StepLabels(_STEP)
    expected = hashlib.sha256(deduplication_id("run-1:op_a[x]", 2, 3).encode()).hexdigest()
    assert message_deduplication_id(step, "ignored") == expected
    assert len(expected) == 64


def test_deduplication_id_changes_with_retry_and_enqueue_attempt_only() -> None:
    base = message_deduplication_id(StepLabels(_STEP), "a")
    assert message_deduplication_id(StepLabels(_STEP), "b") == base  # task id is not part of it
    retry = {**_STEP, "dagster_taskiq_retry_number": 3}
    attempt = {**_STEP, "dagster_taskiq_enqueue_attempt": 4}
    assert message_deduplication_id(StepLabels(retry), "a") != base
    assert message_deduplication_id(StepLabels(attempt), "a") != base


def test_labels_parsed_from_strings() -> None:
    step = StepLabels({LABEL_IDEMPOTENCY_KEY: "r:s", "dagster_taskiq_enqueue_attempt": "5"})
    assert step.enqueue_attempt == 5
    assert step.retry_number is None
    assert step.log_fields() == {"key": "r:s", "retry_number": None, "enqueue_attempt": 5}


@given(st.text(min_size=1, max_size=400))
def test_sqs_id_always_fits_and_keeps_valid_ids(value: str) -> None:
    result = sqs_id(value)
    assert 1 <= len(result) <= 128
    assert set(result) <= _ALLOWED
    if len(value) <= 128 and set(value) <= _ALLOWED:
        assert result == value


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_sqs_id_of_different_values_differ(first: str, second: str) -> None:
    if first != second:
        assert sqs_id(first) != sqs_id(second)


def test_sqs_id_keeps_a_readable_prefix() -> None:
    result = sqs_id("run 1:op with spaces é" + "x" * 200)
    assert result.startswith("run_1:op_with_spaces__")
    assert len(result) == 128


@pytest.mark.parametrize(
    ("queue_url", "endpoint", "expected"),
    [
        (
            "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q.fifo",
            "http://127.0.0.1:4566",
            "http://127.0.0.1:4566/000000000000/q.fifo",
        ),
        (
            "http://localhost.localstack.cloud:4566/000000000000/q",
            "http://localstack:4566",
            "http://localstack:4566/000000000000/q",
        ),
        (  # a caller that reaches LocalStack's names keeps them
            "http://localhost.localstack.cloud:4566/000000000000/q",
            "http://localhost.localstack.cloud:4566",
            "http://localhost.localstack.cloud:4566/000000000000/q",
        ),
        (  # other hosts are left alone
            "http://127.0.0.1:5000/123456789012/q",
            "http://127.0.0.1:4566",
            "http://127.0.0.1:5000/123456789012/q",
        ),
        (  # AWS: no custom endpoint, nothing to rewrite
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            None,
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
        ),
    ],
)
def test_localstack_queue_urls_are_rewritten_to_the_endpoint(
    queue_url: str, endpoint: str | None, expected: str
) -> None:
    assert rewrite_queue_url(queue_url, endpoint) == expected


async def test_the_broker_sends_these_ids_and_the_step_attributes(stub_harness, kick) -> None:
    broker = await stub_harness.broker()
    await kick(broker, "run 1", "op a", retry_number=2, enqueue_attempt=3)
    [call] = stub_harness.stub.calls_to("send_message")
    key = "run 1:op a"
    assert call.params["MessageGroupId"] == sqs_id(key)
    assert call.params["MessageGroupId"] != key  # spaces are not allowed in a group id
    assert (
        call.params["MessageDeduplicationId"]
        == hashlib.sha256(deduplication_id(key, 2, 3).encode()).hexdigest()
    )
    attributes = call.params["MessageAttributes"]
    assert attributes["dagster_taskiq_key"] == {"DataType": "String", "StringValue": key}
    assert attributes["dagster_taskiq_retry_number"]["StringValue"] == "2"
    assert attributes["dagster_taskiq_enqueue_attempt"]["StringValue"] == "3"


async def test_a_plain_task_is_sent_in_its_own_group(stub_harness) -> None:
    broker = await stub_harness.broker()

    @broker.task(task_name="tests.noop")
    async def noop() -> None:
        return None

    first = await noop.kiq()
    second = await noop.kiq()
    calls = stub_harness.stub.calls_to("send_message")
    assert [c.params["MessageGroupId"] for c in calls] == [first.task_id, second.task_id]
    assert [c.params["MessageDeduplicationId"] for c in calls] == [first.task_id, second.task_id]
    assert all("MessageAttributes" not in c.params for c in calls)
