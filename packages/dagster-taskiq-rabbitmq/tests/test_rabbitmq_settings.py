"""``RabbitMqSettings``: defaults, the environment, and errors that name the setting and
variable."""

from __future__ import annotations

import pytest

from dagster_taskiq_rabbitmq import RabbitMqSettings, RabbitMqSettingsError
from dagster_taskiq_testing.broker_helpers import assert_one_setting_problem


def test_defaults() -> None:
    settings = RabbitMqSettings()
    assert settings.url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.queue == "dagster-taskiq"
    assert settings.dead_letter_queue == "dagster-taskiq-dlq"
    assert settings.heartbeat_seconds == 300
    assert settings.heartbeat_every == 100.0


def test_every_field_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "URL": "amqps://user:pw@mq.example:5671/steps",
        "QUEUE_NAME": "gpu",
        "DEAD_LETTER_QUEUE_NAME": "gpu-dead",
        "WAIT_TIME_SECONDS": "2.5",
        "DEDUPLICATION_WINDOW": "60",
        "REQUEST_TIMEOUT": "3",
        "VISIBILITY_TIMEOUT": "30.5",
        "MAX_DELIVERIES": "3",
        "HEARTBEAT_ENABLED": "false",
        "HEARTBEAT_INTERVAL": "7",
        "RETRY_ATTEMPTS": "4",
        "RETRY_INITIAL_DELAY": "0.2",
        "RETRY_MAX_DELAY": "2",
        "RETRY_TIMEOUT": "9",
        "CONNECT_TIMEOUT": "1.5",
    }
    for name, value in values.items():
        monkeypatch.setenv(f"DAGSTER_TASKIQ_RABBITMQ_{name}", value)
    settings = RabbitMqSettings()
    assert settings.model_dump() == {
        "url": "amqps://user:pw@mq.example:5671/steps",
        "queue_name": "gpu",
        "dead_letter_queue_name": "gpu-dead",
        "wait_time_seconds": 2.5,
        "deduplication_window": 60.0,
        "request_timeout": 3.0,
        "visibility_timeout": 30.5,
        "max_deliveries": 3,
        "dead_letters_enabled": True,
        "heartbeat_enabled": False,
        "heartbeat_interval": 7.0,
        "retry_attempts": 4,
        "retry_initial_delay": 0.2,
        "retry_max_delay": 2.0,
        "retry_timeout": 9.0,
        "connect_timeout": 1.5,
    }
    assert settings.heartbeat_seconds == 31  # whole seconds, rounded up
    assert settings.connection_url == "amqps://user:pw@mq.example:5671/steps?heartbeat=31"
    monkeypatch.setenv("DAGSTER_TASKIQ_RABBITMQ_DEAD_LETTERS_ENABLED", "false")
    assert RabbitMqSettings().dead_letter_queue is None


def test_a_queue_a_label_names_has_its_own_dead_letter_queue() -> None:
    settings = RabbitMqSettings(queue_name="steps", dead_letter_queue_name="steps-dead")
    assert settings.dead_letter_queue_of("steps") == "steps-dead"
    assert settings.dead_letter_queue_of("gpu") == "gpu-dlq"


@pytest.mark.parametrize(
    ("values", "field", "env_var", "fragment"),
    [
        ({"url": "http://127.0.0.1:5672"}, "url", "DAGSTER_TASKIQ_RABBITMQ_URL", "amqp://"),
        ({"url": "amqp://host:port/"}, "url", "DAGSTER_TASKIQ_RABBITMQ_URL", "port"),
        ({"queue_name": " "}, "queue_name", "DAGSTER_TASKIQ_RABBITMQ_QUEUE_NAME", "whitespace"),
        ({"queue_name": "x" * 256}, "queue_name", "DAGSTER_TASKIQ_RABBITMQ_QUEUE_NAME", "255"),
        (
            {"queue_name": "amq.steps"},
            "queue_name",
            "DAGSTER_TASKIQ_RABBITMQ_QUEUE_NAME",
            "RabbitMQ's own",
        ),
        (
            {"queue_name": "s", "dead_letter_queue_name": "s"},
            "dead_letter_queue_name",
            "DAGSTER_TASKIQ_RABBITMQ_DEAD_LETTER_QUEUE_NAME",
            "differ",
        ),
        (
            {"dead_letter_queue_name": "amq.dead"},
            "dead_letter_queue_name",
            "DAGSTER_TASKIQ_RABBITMQ_DEAD_LETTER_QUEUE_NAME",
            "RabbitMQ's own",
        ),
        (
            {"wait_time_seconds": 0},
            "wait_time_seconds",
            "DAGSTER_TASKIQ_RABBITMQ_WAIT_TIME_SECONDS",
            "greater than 0",
        ),
        (
            {"wait_time_seconds": 61},
            "wait_time_seconds",
            "DAGSTER_TASKIQ_RABBITMQ_WAIT_TIME_SECONDS",
            "less than or equal to 60",
        ),
        (
            {"deduplication_window": -1},
            "deduplication_window",
            "DAGSTER_TASKIQ_RABBITMQ_DEDUPLICATION_WINDOW",
            "greater than or equal to 0",
        ),
        (
            {"request_timeout": 0},
            "request_timeout",
            "DAGSTER_TASKIQ_RABBITMQ_REQUEST_TIMEOUT",
            "greater than 0",
        ),
        (
            {"visibility_timeout": 0},
            "visibility_timeout",
            "DAGSTER_TASKIQ_RABBITMQ_VISIBILITY_TIMEOUT",
            "greater than 0",
        ),
        (
            {"max_deliveries": 0},
            "max_deliveries",
            "DAGSTER_TASKIQ_RABBITMQ_MAX_DELIVERIES",
            "greater than or equal to 1",
        ),
        (
            {"visibility_timeout": 3, "heartbeat_interval": 3},
            "heartbeat_interval",
            "DAGSTER_TASKIQ_RABBITMQ_HEARTBEAT_INTERVAL",
            "shorter than visibility_timeout",
        ),
        (
            {"retry_initial_delay": 2, "retry_max_delay": 1},
            "retry_max_delay",
            "DAGSTER_TASKIQ_RABBITMQ_RETRY_MAX_DELAY",
            "at least retry_initial_delay",
        ),
        (
            {"retry_attempts": 0},
            "retry_attempts",
            "DAGSTER_TASKIQ_RABBITMQ_RETRY_ATTEMPTS",
            "greater than or equal to 1",
        ),
        (
            {"connect_timeout": 0},
            "connect_timeout",
            "DAGSTER_TASKIQ_RABBITMQ_CONNECT_TIMEOUT",
            "greater than 0",
        ),
        ({"queue": "x"}, "queue", "no such setting", "Extra inputs"),
    ],
)
def test_invalid_values_name_the_setting_and_its_variable(
    values: dict[str, object], field: str, env_var: str, fragment: str
) -> None:
    assert_one_setting_problem(
        RabbitMqSettings,
        RabbitMqSettingsError,
        values,
        field=field,
        env_var=env_var,
        fragment=fragment,
    )


def test_the_password_never_shows() -> None:
    settings = RabbitMqSettings(url="amqp://user:hunter2@mq:5672/")
    assert settings.redacted_url == "amqp://user:***@mq:5672/"
    with pytest.raises(RabbitMqSettingsError) as raised:
        RabbitMqSettings(url="amqp://user:hunter2@mq:port/")
    assert "hunter2" not in str(raised.value)
