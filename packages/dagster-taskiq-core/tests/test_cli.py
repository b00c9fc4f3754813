"""The ``dagster-taskiq`` command line: ``status`` and the worker's argument checks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dagster_taskiq import (
    CodePointer,
    ExecutionResult,
    OpExecutionTask,
    SqlIdempotencyStore,
    TaskState,
    idempotency_key,
)
from dagster_taskiq.backends import load_broker_factory
from dagster_taskiq.cli import main
from dagster_taskiq.errors import BackendNotFoundError


def _task(step: str, run_id: str = "run-9") -> OpExecutionTask:
    return OpExecutionTask(
        run_id=run_id,
        step_key=step,
        idempotency_key=idempotency_key(run_id, step),
        code=CodePointer(job_name="j", module="m"),
        instance_ref={},
        created_at=time.time(),
    )


def _run_9(url: str, extract: TaskState, **error: str) -> SqlIdempotencyStore:
    """A store with run-9's three steps pending but ``extract``, finished as ``extract``."""
    store = SqlIdempotencyStore(url)
    for step in ("extract", "transform", "load"):
        store.ensure_pending(_task(step))
    token = store.claim("run-9:extract", "host:1/abc", 60)
    assert token is not None
    store.finish(
        "run-9:extract",
        token,
        ExecutionResult(
            idempotency_key="run-9:extract",
            state=extract,
            attempt=token,
            worker_id="host:1",
            started_at=1.0,
            finished_at=2.5,
            **error,  # type: ignore[arg-type]
        ),
    )
    return store


def test_status_prints_every_step_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = _run_9(url, TaskState.FAILED, error_class="ValueError", error_message="bad row")
    store.claim("run-9:transform", "host:2/def", 60)
    store.close()

    result = CliRunner().invoke(
        main, ["status", "run-9", "--store-url", url], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    for text in (
        "extract",
        "FAILED",
        "ValueError: bad row",
        "1.50 s",
        "transform",
        "RUNNING",
        "host:2/def",
        "s left",
        "load",
        "PENDING",
    ):
        assert text in result.output, text


def test_status_without_a_run_lists_the_runs_changed_last_with_their_steps(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = _run_9(url, TaskState.COMPLETED)
    store.ensure_pending(_task("only", run_id="run-10"))
    summaries = store.recent_runs()
    store.close()
    assert [(r.run_id, dict(r.steps)) for r in summaries] == [
        ("run-10", {TaskState.PENDING: 1}),
        ("run-9", {TaskState.COMPLETED: 1, TaskState.PENDING: 2}),
    ]

    result = CliRunner().invoke(main, ["status", "--store-url", url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "run-" in line]
    assert "run-10" in lines[0]
    assert "run-9" in lines[1]
    cells = [cell.strip() for cell in lines[1].split("│")]
    assert cells[2:7] == ["3", "2", "0", "1", "0"]  # steps, PENDING, RUNNING, COMPLETED, FAILED
    limited = CliRunner().invoke(main, ["status", "--store-url", url, "--limit", "1"])
    assert "run-9" not in limited.output
    empty = CliRunner().invoke(main, ["status", "--store-url", f"sqlite:///{tmp_path / 'e.db'}"])
    assert empty.exit_code == 1
    assert "no runs in" in empty.output


def test_the_version_is_printed() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("dagster-taskiq ")


def test_status_of_an_unknown_run_fails_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = CliRunner().invoke(main, ["status", "nope", "--store-url", url])
    assert result.exit_code != 0
    assert "no idempotency records for run nope" in result.output


def test_worker_requires_code_locations(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["worker", "--store-url", f"sqlite:///{tmp_path / 's.db'}", "--backend", "memory"]
    )
    assert result.exit_code != 0
    assert "-m/--module or -f/--python-file" in result.output


def test_worker_names_the_installed_backends_for_an_unknown_one(tmp_path: Path) -> None:
    # (every backend we know of is installed in this workspace; the next test covers the
    # "install it with `uv add <package>`" hint for a known but missing one)
    store_url = f"sqlite:///{tmp_path / 's.db'}"
    result = CliRunner().invoke(
        main, ["worker", "--store-url", store_url, "--backend", "kafka", "-m", "x"]
    )
    assert result.exit_code != 0
    message = str(result.exception)
    assert "broker backend 'kafka' is not installed" in message
    assert "installed backends: ['memory', 'nats', 'rabbitmq', 'redis', 'sqs']" in message


def test_broker_settings_must_be_key_value(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "worker",
            "--store-url",
            f"sqlite:///{tmp_path / 's.db'}",
            "-m",
            "x",
            "--broker-setting",
            "no-equals-sign",
        ],
    )
    assert result.exit_code != 0
    assert "is not KEY=VALUE" in result.output


def test_a_known_backend_that_is_not_installed_names_its_package() -> None:
    with pytest.raises(BackendNotFoundError, match=r"install it with `uv add dagster-taskiq-nats`"):
        load_broker_factory("nats", installed=[])
