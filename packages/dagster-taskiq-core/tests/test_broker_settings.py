"""``BrokerSettings``: the shared fields, their one alias, renamed settings, problem texts."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic_settings import SettingsConfigDict

from dagster_taskiq.brokers import BrokerSettings
from dagster_taskiq.errors import ExecutorConfigError, SettingProblem, SettingsError
from dagster_taskiq.executor import ExecutorSettings


class DemoSettingsError(SettingsError):
    service = "demo"


class DemoSettings(BrokerSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_BROKER_")
    settings_error = DemoSettingsError
    url_fields = frozenset({"url"})
    renamed = {"old_window": "window"}  # noqa: RUF012 - read-only class data, as in the backends

    url: str = "demo://host"
    window: float = 1.0

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)

    @property
    def queue(self) -> str:
        return "q"

    @property
    def dead_letter_queue(self) -> str | None:
        return "q-dead" if self.dead_letters_enabled else None


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEMO_BROKER_OLD_WINDOW", "DEMO_BROKER_VISIBILITY_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def test_the_shared_fields_and_their_policy() -> None:
    settings = DemoSettings(visibility_timeout=90, max_deliveries=3)
    policy = settings.delivery_policy()
    assert (policy.queue, policy.dead_letter_queue) == ("q", "q-dead")
    assert (policy.visibility_timeout, policy.max_deliveries) == (90, 3)
    assert policy.heartbeat_every == settings.heartbeat_every == 30
    assert settings.retry_budget.attempts == 10


def test_taskiq_visibility_timeout_is_the_one_alias() -> None:
    assert DemoSettings(taskiq_visibility_timeout=42).visibility_timeout == 42


def test_a_renamed_setting_is_refused_with_its_new_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DemoSettingsError) as raised:
        DemoSettings(old_window=3)
    [problem] = raised.value.problems
    assert problem.field == "old_window"
    assert "renamed: use window (DEMO_BROKER_WINDOW) instead" in str(raised.value)
    monkeypatch.setenv("DEMO_BROKER_OLD_WINDOW", "3")
    with pytest.raises(DemoSettingsError, match=r"DEMO_BROKER_OLD_WINDOW\): renamed"):
        DemoSettings()


def test_problems_name_the_field_its_variable_and_hide_credentials() -> None:
    with pytest.raises(DemoSettingsError) as raised:
        DemoSettings(
            visibility_timeout=0,
            url=["user:secret@host"],
            heartbeat_interval=500,
            retry_initial_delay=2,
            retry_max_delay=1,
        )
    text = str(raised.value)
    assert text.startswith("invalid demo settings:")
    assert "visibility_timeout (DEMO_BROKER_VISIBILITY_TIMEOUT): Input should be greater" in text
    assert "secret" not in text
    with pytest.raises(DemoSettingsError) as raised:
        DemoSettings(heartbeat_interval=500, retry_initial_delay=2, retry_max_delay=1)
    fields = [problem.field for problem in raised.value.problems]
    assert fields == ["retry_max_delay", "heartbeat_interval"]
    with pytest.raises(DemoSettingsError, match=r"surprise \(no such setting\)"):
        DemoSettings(surprise=1)


def test_a_setting_problem_names_every_variable() -> None:
    problem = SettingProblem("region", ("DEMO_REGION", "AWS_REGION"), "bad")
    assert str(problem) == "region (DEMO_REGION / AWS_REGION): bad"
    assert problem.env_var == "DEMO_REGION"


def test_the_executor_config_takes_visibility_timeout_or_its_alias() -> None:
    assert ExecutorSettings.from_config({"visibility_timeout": 60}).visibility_timeout == 60
    assert ExecutorSettings.from_config({"taskiq_visibility_timeout": 70}).visibility_timeout == 70
    assert ExecutorSettings.from_config({}).visibility_timeout == 300
    with pytest.raises(ExecutorConfigError, match="not both"):
        ExecutorSettings.from_config({"visibility_timeout": 60, "taskiq_visibility_timeout": 70})
