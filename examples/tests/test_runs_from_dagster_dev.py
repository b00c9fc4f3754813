"""A run launched the way the UI launches it: through the GraphQL API of ``dagster dev``
(dagster-webserver and dagster-daemon, a gRPC code server, Dagster's queued run coordinator and
default run launcher: the run in a process of its own), succeeds on ``dagster-taskiq worker``
processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from dagster_graphql import DagsterGraphQLClient

from dagster_taskiq import SqlIdempotencyStore, TaskState
from dagster_taskiq_testing.servers._base import free_port
from example_support import executor_config

pytestmark = pytest.mark.sqs_server

CODE_LOCATION = "dagster_taskiq_examples.definitions"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def _wait_for(url: str, webserver: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if webserver.poll() is not None:
            pytest.fail(f"dagster dev exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"dagster dev not up after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def test_a_run_launched_through_dagster_devs_graphql_api_succeeds_on_workers(
    workers_factory: Any, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    store_url = f"sqlite:///{home / 'store.db'}"
    queue = workers_factory(store_url)
    port = free_port()
    log = tmp_path / "webserver.log"
    with open(log, "wb") as output:
        webserver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-m",
                CODE_LOCATION,
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(f"http://127.0.0.1:{port}/server_info", webserver, log, timeout=120)
            client = DagsterGraphQLClient("127.0.0.1", port_number=port)
            run_id = client.submit_job_execution(
                "orders_pipeline",
                run_config={
                    "execution": {"config": executor_config(queue, store_url)},
                    "resources": {"knobs": {"config": {"step_seconds": 0.0}}},
                },
            )
            deadline = time.monotonic() + 180
            status = client.get_run_status(run_id).value
            while status not in FINISHED and time.monotonic() < deadline:
                time.sleep(0.5)
                status = client.get_run_status(run_id).value
        finally:
            webserver.terminate()
            try:
                webserver.wait(30)
            except subprocess.TimeoutExpired:
                webserver.kill()
                webserver.wait()
    assert status == "SUCCESS", log.read_text(errors="replace")[-3000:]

    store = SqlIdempotencyStore(store_url)
    try:
        records = store.records_for_run(run_id)
    finally:
        store.close()
    # Every one of the job's 9 steps was claimed and completed by a worker.
    assert len(records) == 9
    assert all(r.state is TaskState.COMPLETED and r.owner for r in records), records
