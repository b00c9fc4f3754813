"""Runs started the ways Dagster starts them outside tests, on ``dagster dev`` (dagster-webserver
and dagster-daemon, a gRPC code server, Dagster's queued run coordinator and default run
launcher: each run in a process of its own), succeed on ``dagster-taskiq worker`` processes:
launched through the GraphQL API (as the UI's launchpad does), and started by the daemon for a
schedule and a sensor."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from dagster_taskiq import SqlIdempotencyStore, TaskState
from dagster_taskiq.instances import STORE_FILE
from dagster_taskiq_examples._cluster import DemoQueue
from dagster_taskiq_testing.servers._base import free_port
from example_support import executor_config

pytestmark = pytest.mark.sqs_server

CODE_LOCATION = "dagster_taskiq_examples.definitions"
DAEMON_DEFINITIONS = Path(__file__).resolve().parent / "daemon_definitions.py"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@contextlib.contextmanager
def dagster_dev(
    home: Path, code: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[int]:
    """``dagster dev`` on ``code`` (``-m MODULE`` or ``-f FILE``) with ``home`` as its
    DAGSTER_HOME; yields its port once the webserver answers, stops it afterwards."""
    port = free_port()
    argv = [sys.executable, "-m", "dagster", "dev", *code, "-h", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as output:
        dev = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {}), "DAGSTER_HOME": str(home)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(f"http://127.0.0.1:{port}/server_info", dev, log, timeout=120)
            yield port
        finally:
            dev.terminate()
            try:
                dev.wait(30)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.wait()


def _wait_for(url: str, dev: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dev.poll() is not None:
            pytest.fail(f"dagster dev exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"dagster dev not up after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def _completed_on_workers(store_url: str, run_id: str) -> None:
    """Every one of ``orders_pipeline``'s 9 steps was claimed and completed by a worker."""
    store = SqlIdempotencyStore(store_url)
    try:
        records = store.records_for_run(run_id)
    finally:
        store.close()
    assert len(records) == 9
    assert all(r.state is TaskState.COMPLETED and r.owner for r in records), records


def test_a_run_launched_through_dagster_devs_graphql_api_succeeds_on_workers(
    workers_factory: Any, tmp_path: Path
) -> None:
    home = _home(tmp_path)
    store_url = f"sqlite:///{home / 'store.db'}"
    queue = workers_factory(store_url)
    log = tmp_path / "dagster-dev.log"
    with dagster_dev(home, ["-m", CODE_LOCATION], log) as port:
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
    assert status == "SUCCESS", log.read_text(errors="replace")[-3000:]
    _completed_on_workers(store_url, run_id)


def _executor_environment(queue: DemoQueue) -> dict[str, str]:
    """The SQS broker settings of runs that the daemon starts (no run config of ours): from
    the run process's environment, as in production."""
    assert queue.endpoint_url is not None
    return {
        "DAGSTER_TASKIQ_SQS_ENDPOINT_URL": queue.endpoint_url,
        "DAGSTER_TASKIQ_SQS_QUEUE_NAME": queue.queue_name,
        "DAGSTER_TASKIQ_SQS_REGION": queue.region,
        "DAGSTER_TASKIQ_SQS_CREATE_QUEUES_IF_MISSING": "true",
        "DAGSTER_TASKIQ_SQS_WAIT_TIME_SECONDS": "1",
        # the queue's, as the workers made it (a broker refuses a queue unlike its settings)
        "DAGSTER_TASKIQ_SQS_VISIBILITY_TIMEOUT": str(queue.visibility_timeout),
    }


def test_the_daemon_starts_a_schedules_and_a_sensors_runs_and_they_succeed_on_workers(
    workers_factory: Any, tmp_path: Path
) -> None:
    home = _home(tmp_path)
    (home / "inbox").mkdir()
    (home / "inbox" / "orders-2026-12-05.csv").write_text("region,amount\n")
    store_url = f"sqlite:///{home / STORE_FILE}"  # the executor's default: the instance's
    (home / STORE_FILE).parent.mkdir(parents=True)
    # The workers serve the daemon's code location: the file ``dagster dev -f`` loads.
    queue = workers_factory(store_url, ("-f", str(DAEMON_DEFINITIONS)))
    log = tmp_path / "dagster-dev.log"
    wanted = {"dagster/schedule_name": "orders_schedule", "dagster/sensor_name": "inbox_sensor"}
    finished: dict[str, Any] = {}
    with (
        dagster_dev(home, ["-f", str(DAEMON_DEFINITIONS)], log, _executor_environment(queue)),
        DagsterInstance.from_config(str(home)) as instance,
    ):
        deadline = time.monotonic() + 240  # the schedule ticks at the next whole minute
        while len(finished) < len(wanted) and time.monotonic() < deadline:
            for run in instance.get_runs():
                for tag, name in wanted.items():
                    if run.tags.get(tag) == name and run.is_finished:
                        finished[tag] = run
            time.sleep(1)
        errors = {
            run.run_id: [
                str(entry.dagster_event.event_specific_data)[:1500]
                for entry in instance.all_logs(run.run_id)
                if entry.dagster_event is not None and entry.dagster_event.is_failure
            ]
            for run in finished.values()
        }
    assert set(finished) == set(wanted), log.read_text(errors="replace")[-3000:]
    for run in finished.values():
        assert run.status is DagsterRunStatus.SUCCESS, (run.tags, errors[run.run_id])
        _completed_on_workers(store_url, run.run_id)
    assert finished["dagster/sensor_name"].tags["inbox_file"] == "orders-2026-12-05.csv"
