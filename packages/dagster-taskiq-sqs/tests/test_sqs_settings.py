"""``SqsSettings``: every field from the environment, every invalid value's error text."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import SecretStr

from dagster_taskiq import DagsterTaskIQError
from dagster_taskiq_sqs import (
    DagsterTaskIQSqsError,
    DeduplicationScope,
    FifoThroughputLimit,
    GroupStrategy,
    SqsSettings,
    SqsSettingsError,
)

_AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DAGSTER_TASKIQ_SQS_") or name in _AWS_VARIABLES:
            monkeypatch.delenv(name)


# field -> (environment value, parsed value); one consistent, non-default set of all fields.
FROM_ENVIRONMENT: dict[str, tuple[str, Any]] = {
    "queue_name": ("work.fifo", "work.fifo"),
    "endpoint_url": ("http://localhost:4566", "http://localhost:4566"),
    "region": ("eu-west-1", "eu-west-1"),
    "aws_access_key_id": ("AKIDEXAMPLE", "AKIDEXAMPLE"),
    "aws_secret_access_key": ("wJalrXUtnFEMI", "wJalrXUtnFEMI"),
    "aws_session_token": ("token-1", "token-1"),
    "visibility_timeout": ("600", 600),
    "wait_time_seconds": ("5", 5),
    "max_messages": ("7", 7),
    "receive_ahead": ("true", True),
    "fifo": ("true", True),
    "deduplication_scope": ("messageGroup", DeduplicationScope.MESSAGE_GROUP),
    "fifo_throughput_limit": ("perMessageGroupId", FifoThroughputLimit.PER_MESSAGE_GROUP_ID),
    "group_strategy": ("per_run", GroupStrategy.PER_RUN),
    "dead_letters_enabled": ("false", False),
    "dead_letter_queue_name": ("work-dead.fifo", "work-dead.fifo"),
    "max_deliveries": ("9", 9),
    "create_queues_if_missing": ("true", True),
    "retry_attempts": ("4", 4),
    "retry_initial_delay": ("0.5", 0.5),
    "retry_max_delay": ("2", 2.0),
    "retry_timeout": ("30", 30.0),
    "connect_timeout": ("3", 3.0),
    "heartbeat_enabled": ("false", False),
    "heartbeat_interval": ("10", 10.0),
}


def _value(settings: SqsSettings, field: str) -> Any:
    value = getattr(settings, field)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_the_table_covers_every_field() -> None:
    assert set(FROM_ENVIRONMENT) == set(SqsSettings.model_fields)


def test_every_field_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for field, (raw, _) in FROM_ENVIRONMENT.items():
        monkeypatch.setenv(SqsSettings.env_vars(field)[0], raw)
    settings = SqsSettings()
    for field, (_, expected) in FROM_ENVIRONMENT.items():
        assert _value(settings, field) == expected, field
    assert settings.is_fifo
    assert settings.dead_letter_queue is None  # dead_letters_enabled=false
    assert settings.heartbeat_every == 10.0
    assert settings.has_custom_endpoint


def test_defaults_without_environment() -> None:
    settings = SqsSettings()
    assert settings.queue == "dagster-taskiq.fifo"
    assert settings.is_fifo
    assert settings.dead_letter_queue == "dagster-taskiq-dlq.fifo"
    assert settings.endpoint_url is None
    assert not settings.has_custom_endpoint
    assert settings.region == "us-east-1"
    assert settings.visibility_timeout == 300
    assert settings.heartbeat_every == 100
    assert settings.group_strategy is GroupStrategy.PER_STEP
    assert not settings.create_queues_if_missing


def test_standard_aws_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://generic:4566")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    settings = SqsSettings()
    assert settings.endpoint_url == "http://generic:4566"
    assert settings.region == "ap-south-1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://sqs-only:4566")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    settings = SqsSettings()
    assert settings.endpoint_url == "http://sqs-only:4566"
    assert settings.region == "eu-central-1"
    monkeypatch.setenv("DAGSTER_TASKIQ_SQS_ENDPOINT_URL", "http://ours:4566")
    monkeypatch.setenv("DAGSTER_TASKIQ_SQS_REGION", "us-west-2")
    settings = SqsSettings()
    assert settings.endpoint_url == "http://ours:4566"
    assert settings.region == "us-west-2"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_TASKIQ_SQS_QUEUE_NAME", "env.fifo")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = SqsSettings(queue_name="arg.fifo", region="us-east-2")
    assert settings.queue_name == "arg.fifo"
    assert settings.region == "us-east-2"


def test_queue_given_as_a_url() -> None:
    url = "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/steps.fifo"
    settings = SqsSettings(queue_name=url)
    assert settings.queue_url == url
    assert settings.queue == "steps.fifo"
    assert settings.dead_letter_queue == "steps-dlq.fifo"
    assert SqsSettings(queue_name="plain").dead_letter_queue == "plain-dlq"


def test_aws_endpoints_are_not_custom() -> None:
    assert not SqsSettings(endpoint_url="https://sqs.eu-west-1.amazonaws.com").has_custom_endpoint
    assert SqsSettings(endpoint_url="http://127.0.0.1:4566").has_custom_endpoint


def test_settings_are_not_read_at_import() -> None:
    environment = {**os.environ, "DAGSTER_TASKIQ_SQS_MAX_MESSAGES": "99"}
    code = (
        "import dagster_taskiq_sqs, dagster_taskiq_sqs.factory, dagster_taskiq_testing.broker\n"
        "try:\n"
        "    dagster_taskiq_sqs.create_broker()\n"
        "except dagster_taskiq_sqs.SqsSettingsError as exc:\n"
        "    print('refused at call:', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    assert "refused at call:" in result.stdout
    assert "DAGSTER_TASKIQ_SQS_MAX_MESSAGES" in result.stdout


# (field, value, what the error says); the value given as an argument and as the variable.
INVALID: list[tuple[str, str, str]] = [
    ("queue_name", "bad name", "not a valid SQS queue name"),
    ("queue_name", "q" * 81, "not a valid SQS queue name"),
    ("queue_name", "http://localhost:4566/", "names no queue"),
    ("endpoint_url", "localhost:4566", "not an http(s) URL with a host"),
    ("region", "EU West", "not a region name like 'us-east-1'"),
    ("visibility_timeout", "0", "greater than or equal to 1"),
    ("visibility_timeout", "43201", "less than or equal to 43200"),
    ("visibility_timeout", "soon", "valid integer"),
    ("wait_time_seconds", "21", "less than or equal to 20"),
    ("wait_time_seconds", "-1", "greater than or equal to 0"),
    ("max_messages", "0", "greater than or equal to 1"),
    ("max_messages", "11", "less than or equal to 10"),
    ("receive_ahead", "later", "valid boolean"),
    ("fifo", "maybe", "valid boolean"),
    ("fifo", "false", "ends in '.fifo'"),
    ("deduplication_scope", "group", "'queue' or 'messageGroup'"),
    ("fifo_throughput_limit", "fast", "'perQueue' or 'perMessageGroupId'"),
    ("fifo_throughput_limit", "perMessageGroupId", "needs deduplication_scope 'messageGroup'"),
    ("group_strategy", "per_op", "'per_step', 'per_run' or 'single'"),
    ("dead_letters_enabled", "perhaps", "valid boolean"),
    ("dead_letter_queue_name", "dead", "must end in '.fifo'"),
    ("dead_letter_queue_name", "dagster-taskiq.fifo", "must differ from the queue itself"),
    ("dead_letter_queue_name", "bad name!", "not a valid SQS queue name"),
    ("max_deliveries", "0", "greater than or equal to 1"),
    ("max_deliveries", "1001", "less than or equal to 1000"),
    ("create_queues_if_missing", "sometimes", "valid boolean"),
    ("retry_attempts", "0", "greater than or equal to 1"),
    ("retry_initial_delay", "0", "greater than 0"),
    ("retry_max_delay", "0.01", "must be at least retry_initial_delay (0.1)"),
    ("retry_timeout", "-1", "greater than 0"),
    ("connect_timeout", "0", "greater than 0"),
    ("heartbeat_enabled", "x", "valid boolean"),
    ("heartbeat_interval", "0", "greater than 0"),
    ("heartbeat_interval", "300", "must be shorter than visibility_timeout (300 s)"),
    ("aws_access_key_id", "AKIDEXAMPLE", "set both aws_access_key_id and aws_secret_access_key"),
    ("aws_secret_access_key", "s3cr3t-value", "set both aws_access_key_id and"),
]


def test_every_field_has_an_invalid_case() -> None:
    covered = {field for field, _, _ in INVALID}
    assert covered == set(SqsSettings.model_fields) - {"aws_session_token"}


@pytest.mark.parametrize("source", ["argument", "environment"])
@pytest.mark.parametrize(("field", "value", "says"), INVALID)
def test_invalid_value_names_the_setting_and_its_variable(
    monkeypatch: pytest.MonkeyPatch, source: str, field: str, value: str, says: str
) -> None:
    arguments = {field: value} if source == "argument" else {}
    if source == "environment":
        monkeypatch.setenv(SqsSettings.env_vars(field)[0], value)
    with pytest.raises(SqsSettingsError) as excinfo:
        SqsSettings(**arguments)
    message = str(excinfo.value)
    [problem] = [p for p in excinfo.value.problems if says in p.message]
    assert problem.field in {field, "aws_access_key_id", "aws_secret_access_key"}
    assert f"{problem.field} (" in message
    assert SqsSettings.env_vars(problem.field)[0] in message
    assert says in message
    if field.startswith("aws_"):
        assert value not in message  # secrets are never echoed


def test_all_problems_of_a_kind_are_reported_together() -> None:
    with pytest.raises(SqsSettingsError) as excinfo:
        SqsSettings(max_messages=0, wait_time_seconds=99, bogus=1)
    fields = [problem.field for problem in excinfo.value.problems]
    assert fields == ["wait_time_seconds", "max_messages", "bogus"]
    assert "bogus (no such setting): Extra inputs are not permitted" in str(excinfo.value)


def test_settings_error_is_in_the_package_hierarchy() -> None:
    assert issubclass(SqsSettingsError, DagsterTaskIQSqsError)
    assert issubclass(DagsterTaskIQSqsError, DagsterTaskIQError)
    assert issubclass(SqsSettingsError, ValueError)


def test_standard_queue_rejects_fifo_only_settings() -> None:
    with pytest.raises(SqsSettingsError, match=r"deduplication_scope .*applies to FIFO"):
        SqsSettings(queue_name="standard", deduplication_scope="messageGroup")
    with pytest.raises(
        SqsSettingsError, match=r"dead_letter_queue_name .*must not end in '\.fifo'"
    ):
        SqsSettings(queue_name="standard", dead_letter_queue_name="dead.fifo")
    with pytest.raises(SqsSettingsError, match=r"fifo .*has no '\.fifo' suffix"):
        SqsSettings(queue_name="standard", fifo=True)


def test_taskiq_visibility_timeout_is_the_alias_of_visibility_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SqsSettings(taskiq_visibility_timeout=60).visibility_timeout == 60
    monkeypatch.setenv("DAGSTER_TASKIQ_SQS_TASKIQ_VISIBILITY_TIMEOUT", "70")
    assert SqsSettings().visibility_timeout == 70


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("max_receive_count", "max_deliveries"),
        ("dlq_enabled", "dead_letters_enabled"),
        ("dlq_name", "dead_letter_queue_name"),
    ],
)
def test_a_renamed_setting_names_its_new_name(old: str, new: str) -> None:
    with pytest.raises(SqsSettingsError, match=f"renamed: use {new} "):
        SqsSettings(**{old: 1})
