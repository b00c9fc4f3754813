"""The code location: every job defaults to taskiq_executor, and Dagster's CLI runs it so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from dagster_taskiq import SqlIdempotencyStore, TaskState
from dagster_taskiq_examples.definitions import defs
from example_support import executor_config

JOBS = ["orders_pipeline", "daily_orders_job", "chain_20", "fan_out_50"]


@pytest.mark.parametrize("name", JOBS)
def test_every_job_defaults_to_the_taskiq_executor(name: str) -> None:
    assert defs.resolve_job_def(name).executor_def.name == "taskiq"


def test_the_partitioned_job_has_daily_partitions_and_the_check() -> None:
    job = defs.resolve_job_def("daily_orders_job")
    assert job.partitions_def is not None
    assert "2026-11-02" in job.partitions_def.get_partition_keys()
    assert {node.name for node in job.nodes} == {
        "daily_orders",
        "daily_revenue",
        "daily_revenue_revenue_is_not_negative",
    }


@pytest.mark.sqs_server
def test_dagster_job_execute_runs_every_step_on_the_workers(
    workers_factory: Any, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    queue = workers_factory(store_url)
    config = {
        "execution": {"config": executor_config(queue, store_url)},
        "resources": {"knobs": {"config": {"step_seconds": 0.0}}},
    }
    config_file = tmp_path / "run_config.json"
    config_file.write_text(json.dumps(config))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            "dagster_taskiq_examples.definitions",
            "-j",
            "orders_pipeline",
            "-c",
            str(config_file),
        ],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status is DagsterRunStatus.SUCCESS
    store = SqlIdempotencyStore(store_url)
    try:
        records = store.records_for_run(run.run_id)
    finally:
        store.close()
    # The steps went through the idempotency store: the default executor was taskiq's.
    assert len(records) == 9
    assert {r.state for r in records} == {TaskState.COMPLETED}
    assert {r.result.worker_id.split("/")[0] for r in records if r.result} != {""}
