"""The one retry helper of the store and every broker backend (``dagster_taskiq.retrying``)."""

from __future__ import annotations

import types

import pytest
import structlog
from structlog.testing import capture_logs

from dagster_taskiq.retrying import RetryBudget, Retrying

_log = structlog.get_logger("test_retrying")


class TransientError(ConnectionError):
    pass


class GaveUpError(Exception):
    pass


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


def _budget(attempts: int = 3, timeout: float = 30.0) -> RetryBudget:
    return RetryBudget(attempts=attempts, initial_delay=0.001, max_delay=0.002, timeout=timeout)


class Flaky:
    """Fails with ``errors`` in turn, then returns ``"done"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        return self.sync()

    def sync(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


DEMO = {
    "is_transient": _is_transient,
    "logger": _log,
    "event_prefix": "demo",
    "target": {"server": "demo://h:1", "stream": "steps"},
    "unreachable": "Demo at demo://h:1 unreachable for stream 'steps'",
    "error": GaveUpError,
}
"""A demo service's policy, but for its budget."""


def _policy(budget: RetryBudget) -> Retrying:
    return Retrying(budget=budget, **DEMO)


VARIANTS = ["call", "call_sync"]
"""The policy's async and blocking calls."""


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _call(call: Flaky, budget: RetryBudget, variant: str = "call") -> str:
    fields = {"key": "run:step"}
    if variant == "call_sync":
        return _policy(budget).call_sync("send", call.sync, log_fields=fields)
    return await _policy(budget).call("send", call, log_fields=fields)


async def test_transient_errors_are_retried_within_the_budget_and_logged(variant: str) -> None:
    call = Flaky(TransientError("refused"), TransientError("reset"))
    with capture_logs() as logs:
        assert await _call(call, _budget(attempts=3), variant) == "done"
    assert call.calls == 3
    retries = [log for log in logs if log["event"] == "demo_retry"]
    assert [log["attempt"] for log in retries] == [1, 2]
    first = retries[0]
    assert list(first) == [
        "operation",
        "server",
        "stream",
        "attempt",
        "next_wait",
        "error",
        "key",
        "event",
        "log_level",
    ]
    assert first["operation"] == "send"
    assert first["server"] == "demo://h:1"
    assert first["stream"] == "steps"
    assert first["error"] == "TransientError: refused"
    assert first["key"] == "run:step"
    assert first["log_level"] == "warning"
    assert isinstance(first["next_wait"], float)
    assert not [log for log in logs if log["event"] == "demo_unavailable"]


async def test_a_non_transient_error_is_raised_at_once_unlogged(variant: str) -> None:
    call = Flaky(ValueError("bad parameter"))
    with capture_logs() as logs, pytest.raises(ValueError, match="bad parameter"):
        await _call(call, _budget(attempts=5), variant)
    assert call.calls == 1
    assert not [log for log in logs if str(log["event"]).startswith("demo_")]


async def test_a_spent_budget_raises_the_given_error_naming_the_target(variant: str) -> None:
    call = Flaky(
        TransientError("refused"), TransientError("refused"), TransientError("still refused")
    )
    with capture_logs() as logs, pytest.raises(GaveUpError) as raised:
        await _call(call, _budget(attempts=3), variant)
    assert call.calls == 3
    message = str(raised.value)
    assert message.startswith(
        "Demo at demo://h:1 unreachable for stream 'steps' (send): gave up after 3 attempt(s) in "
    )
    assert message.endswith(
        " s (budget: 3 attempts, 30 s; settings retry_attempts / retry_timeout). "
        "Last error: TransientError: still refused"
    )
    assert isinstance(raised.value.__cause__, TransientError)
    # the last attempt is not announced as a retry: it is the one that gives up
    assert [log["attempt"] for log in logs if log["event"] == "demo_retry"] == [1, 2]
    (unavailable,) = [log for log in logs if log["event"] == "demo_unavailable"]
    assert list(unavailable) == [
        "operation",
        "server",
        "stream",
        "attempts",
        "elapsed",
        "error",
        "key",
        "event",
        "log_level",
    ]
    assert unavailable["attempts"] == 3
    assert unavailable["error"] == "TransientError: still refused"
    assert unavailable["log_level"] == "error"


async def test_the_timeout_ends_the_retries_before_the_attempts_do(variant: str) -> None:
    call = Flaky(*[TransientError("refused") for _ in range(100)])
    with capture_logs(), pytest.raises(GaveUpError, match=r"budget: 100 attempts, 0\.05 s"):
        await _call(
            call,
            RetryBudget(attempts=100, initial_delay=0.01, max_delay=0.02, timeout=0.05),
            variant,
        )
    assert call.calls < 100


def test_budget_from_settings_and_delay_problem() -> None:
    settings = types.SimpleNamespace(
        retry_attempts=4, retry_initial_delay=0.5, retry_max_delay=2.0, retry_timeout=9.0
    )
    budget = RetryBudget.from_settings(settings)
    assert repr(budget) == "RetryBudget(attempts=4, initial_delay=0.5, max_delay=2.0, timeout=9.0)"
    assert budget.jitter == 0.5
    assert RetryBudget(attempts=1, initial_delay=3.0, max_delay=5.0, timeout=1.0).jitter == 1.0
    assert RetryBudget.delay_problem(0.5, 2.0) is None
    assert RetryBudget.delay_problem(0.5, 0.5) is None
    assert RetryBudget.delay_problem(1.0, 0.5) == (
        "must be at least retry_initial_delay (1.0), got 0.5"
    )


async def test_a_non_transient_error_after_a_retry_is_raised_as_it_is(variant: str) -> None:
    call = Flaky(TransientError("refused"), ValueError("bad parameter"))
    with capture_logs() as logs, pytest.raises(ValueError, match="bad parameter") as raised:
        await _call(call, _budget(attempts=5), variant)
    assert call.calls == 2
    assert raised.value.__cause__ is None
    events = [log["event"] for log in logs if str(log["event"]).startswith("demo_")]
    assert events == ["demo_retry"]  # the transient failure before it, not the ValueError


async def test_a_budget_of_one_attempt_gives_up_on_the_first_failure(variant: str) -> None:
    call = Flaky(TransientError("refused"))
    with capture_logs() as logs, pytest.raises(GaveUpError, match=r"gave up after 1 attempt\(s\)"):
        await _call(call, _budget(attempts=1), variant)
    assert call.calls == 1
    events = [log["event"] for log in logs if str(log["event"]).startswith("demo_")]
    assert events == ["demo_unavailable"]


def test_a_policy_names_where_its_budget_is_set_and_renders_errors_its_way() -> None:
    policy = Retrying(
        budget=_budget(attempts=2),
        is_transient=_is_transient,
        logger=_log,
        event_prefix="store",
        target={"store": "sqlite:///x.db"},
        unreachable="idempotency store sqlite:///x.db unreachable",
        error=GaveUpError,
        budget_hint="the store's retry budget",
        describe=lambda exc: f"driver said {exc}",
    )
    call = Flaky(TransientError("locked"), TransientError("locked"))
    with capture_logs() as logs, pytest.raises(GaveUpError) as raised:
        policy.call_sync("claim", call.sync)
    assert str(raised.value).endswith(
        "(budget: 2 attempts, 30 s; the store's retry budget). Last error: driver said locked"
    )
    ours = [log for log in logs if str(log["event"]).startswith("store_")]
    assert [log["event"] for log in ours] == ["store_retry", "store_unavailable"]
    assert [log["error"] for log in ours] == ["driver said locked", "driver said locked"]


def test_budget_jitter_can_be_given_and_a_budget_is_checked() -> None:
    budget = RetryBudget(attempts=3, initial_delay=0.05, max_delay=2.0, timeout=30.0, jitter=0.25)
    assert budget.jitter == 0.25
    assert repr(budget) == (
        "RetryBudget(attempts=3, initial_delay=0.05, max_delay=2.0, timeout=30.0, jitter=0.25)"
    )
    with pytest.raises(ValueError, match=r"attempts must be >= 1, got 0"):
        RetryBudget(attempts=0, initial_delay=0.1, max_delay=1.0, timeout=1.0)
    with pytest.raises(ValueError, match=r"timeout must be >= 0, got -1"):
        RetryBudget(attempts=1, initial_delay=0.1, max_delay=1.0, timeout=-1)
