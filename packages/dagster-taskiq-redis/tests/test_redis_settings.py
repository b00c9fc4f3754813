"""``RedisSettings``: defaults, the environment, and errors that name the setting and variable."""

from __future__ import annotations

import pytest

from dagster_taskiq_redis import RedisSettings, RedisSettingsError
from dagster_taskiq_testing.broker_helpers import assert_one_setting_problem


def test_defaults() -> None:
    settings = RedisSettings()
    assert settings.url == "redis://127.0.0.1:6379"
    assert settings.dead_letter_queue == "dagster-taskiq-dlq"
    assert settings.visibility_ms == 300_000
    assert settings.heartbeat_every == 100.0


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # (the shared settings' own cases are the conformance suite's)
    monkeypatch.setenv("DAGSTER_TASKIQ_REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("DAGSTER_TASKIQ_REDIS_MAX_DELIVERIES", "3")
    monkeypatch.setenv("DAGSTER_TASKIQ_REDIS_DEAD_LETTERS_ENABLED", "false")
    settings = RedisSettings(stream="steps")
    assert (settings.url, settings.max_deliveries, settings.dead_letter_queue) == (
        "redis://cache:6380/2",
        3,
        None,
    )


@pytest.mark.parametrize(
    ("values", "field", "env_var", "fragment"),
    [
        ({"url": "http://127.0.0.1:6379"}, "url", "DAGSTER_TASKIQ_REDIS_URL", "redis://"),
        ({"url": "redis://host:port"}, "url", "DAGSTER_TASKIQ_REDIS_URL", "port"),
        ({"stream": "two words"}, "stream", "DAGSTER_TASKIQ_REDIS_STREAM", "whitespace"),
        (
            {"stream": "s", "dead_letter_stream": "s"},
            "dead_letter_stream",
            "DAGSTER_TASKIQ_REDIS_DEAD_LETTER_STREAM",
            "differ",
        ),
    ],
)
def test_invalid_values_name_the_setting_and_its_variable(
    values: dict[str, object], field: str, env_var: str, fragment: str
) -> None:
    assert_one_setting_problem(
        RedisSettings, RedisSettingsError, values, field=field, env_var=env_var, fragment=fragment
    )


def test_the_password_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = RedisSettings(url="redis://user:hunter2@cache:6379/0")
    assert settings.redacted_url == "redis://user:***@cache:6379/0"
    with pytest.raises(RedisSettingsError) as raised:
        RedisSettings(url="redis://user:hunter2@cache:port/0")
    assert "hunter2" not in str(raised.value)
