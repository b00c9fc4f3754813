"""``NatsSettings``: defaults, the environment, and errors that name the setting and variable."""

from __future__ import annotations

import pytest

from dagster_taskiq_nats import NatsSettings, NatsSettingsError, Storage
from dagster_taskiq_testing.broker_helpers import assert_one_setting_problem


def test_defaults() -> None:
    settings = NatsSettings()
    assert settings.server_list == ["nats://127.0.0.1:4222"]
    assert (settings.stream, settings.subject) == ("DAGSTER_TASKIQ", "dagster-taskiq.steps")
    assert settings.dead_letter_queue == "DAGSTER_TASKIQ_DLQ"
    assert settings.advisory_subject == (
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.DAGSTER_TASKIQ.dagster-taskiq-workers"
    )
    assert settings.storage is Storage.FILE
    assert settings.heartbeat_every == 100.0


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # (the shared settings' own cases are the conformance suite's)
    monkeypatch.setenv("DAGSTER_TASKIQ_NATS_SERVERS", "nats://a:4222, nats://b:4222")
    monkeypatch.setenv("DAGSTER_TASKIQ_NATS_MAX_DELIVERIES", "3")
    monkeypatch.setenv("DAGSTER_TASKIQ_NATS_DEAD_LETTERS_ENABLED", "false")
    settings = NatsSettings(stream="STEPS")
    assert settings.server_list == ["nats://a:4222", "nats://b:4222"]
    assert (settings.max_deliveries, settings.dead_letter_queue) == (3, None)


@pytest.mark.parametrize(
    ("values", "field", "env_var", "fragment"),
    [
        ({"servers": "http://127.0.0.1:4222"}, "servers", "DAGSTER_TASKIQ_NATS_SERVERS", "nats://"),
        ({"servers": " , "}, "servers", "DAGSTER_TASKIQ_NATS_SERVERS", "at least one"),
        ({"servers": "nats://host:port"}, "servers", "DAGSTER_TASKIQ_NATS_SERVERS", "port"),
        ({"stream": "a.b"}, "stream", "DAGSTER_TASKIQ_NATS_STREAM", "'.'"),
        ({"consumer": "w*"}, "consumer", "DAGSTER_TASKIQ_NATS_CONSUMER", "'*'"),
        ({"subject": "steps.>"}, "subject", "DAGSTER_TASKIQ_NATS_SUBJECT", "wildcards"),
        ({"storage": "disk"}, "storage", "DAGSTER_TASKIQ_NATS_STORAGE", "'file' or 'memory'"),
        (
            {"stream": "S", "dead_letter_stream": "S"},
            "dead_letter_stream",
            "DAGSTER_TASKIQ_NATS_DEAD_LETTER_STREAM",
            "differ",
        ),
    ],
)
def test_invalid_values_name_the_setting_and_its_variable(
    values: dict[str, object], field: str, env_var: str, fragment: str
) -> None:
    assert_one_setting_problem(
        NatsSettings, NatsSettingsError, values, field=field, env_var=env_var, fragment=fragment
    )


def test_credentials_never_show() -> None:
    settings = NatsSettings(servers="nats://user:hunter2@a:4222,nats://b:4222")
    assert settings.redacted_servers == "nats://***@a:4222,nats://b:4222"
    with pytest.raises(NatsSettingsError) as raised:
        NatsSettings(servers="http://user:hunter2@a:4222")
    assert "hunter2" not in str(raised.value)
