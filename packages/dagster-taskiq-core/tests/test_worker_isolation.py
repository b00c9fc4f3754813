"""``--isolation subprocess``: each step in a fresh process, same results, interruptible."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from dagster_taskiq import ExecutorSettings, SqlIdempotencyStore, TaskState
from dagster_taskiq.worker import SubprocessStepRunner
from support import TESTS_DIR, job_shapes
from support.executor_harness import (
    SHAPES_LOCATIONS,
    InProcessWorkers,
    cancelled_once_started,
    injected,
    run_job,
    wait_for_final_records,
)
from support.thread_broker import ThreadQueueBroker


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    monkeypatch.setenv(job_shapes.LEDGER_ENV, str(ledger))
    # The step processes import support.job_shapes as the run's code pointer names it.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    return ledger


def test_subprocess_isolation_runs_a_job(
    tmp_path: Path, env: Path, instance: DagsterInstance
) -> None:
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    broker = ThreadQueueBroker()
    with (
        injected(broker, store),
        InProcessWorkers(
            lambda: broker,
            store,
            count=1,
            runner_factory=lambda: SubprocessStepRunner(SHAPES_LOCATIONS),
        ),
    ):
        report = run_job(job_shapes.diamond, instance, store, output_nodes=("add",))
    assert report.success
    assert report.outputs == {"add": 4}
    pids = {
        line.split("\t")[2] for line in (env / f"{report.run_id}.ledger").read_text().splitlines()
    }
    assert len(pids) == 4  # every step in its own process
    assert str(os.getpid()) not in pids
    assert all(r.state is TaskState.COMPLETED for r in report.records), report.records


def test_subprocess_step_is_interrupted_when_the_run_is_cancelled(
    tmp_path: Path, env: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_TASKIQ_TEST_SLOW_SECONDS", "30")
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    broker = ThreadQueueBroker()

    settings = ExecutorSettings(backend="injected", poll_interval=0.1)
    with (
        injected(broker, store, settings),
        InProcessWorkers(
            lambda: broker,
            store,
            count=1,
            runner_factory=lambda: SubprocessStepRunner(SHAPES_LOCATIONS),
        ),
    ):
        started = time.monotonic()
        with cancelled_once_started(instance, str(env), timeout=60):
            report = run_job(job_shapes.slow_job, instance, store)
        wait_for_final_records(store, report.run_id, timeout=20)
    assert time.monotonic() - started < 25
    run = instance.get_run_by_id(report.run_id)
    assert run is not None
    assert run.status == DagsterRunStatus.CANCELED
    assert job_shapes.read_ledger(str(env), report.run_id) == ["slow"]
    record = store.get(f"{report.run_id}:slow")
    assert record is not None
    assert record.state is TaskState.FAILED
