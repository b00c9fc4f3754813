"""Runs started the ways Dagster starts them outside tests, on ``dagster dev`` (dagster-webserver
and dagster-daemon, a gRPC code server, Dagster's queued run coordinator and default run
launcher: each run in a process of its own), succeed on ``dagster-taskiq worker`` processes:
launched through the GraphQL API (as the UI's launchpad does), started by the daemon for a
schedule and a sensor, and a single-run backfill over three partitions."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
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


def _completed_on_workers(store_url: str, run_id: str, steps: int = 9) -> None:
    """Every one of the run's steps (``orders_pipeline``'s 9 by default) was claimed and
    completed by a worker."""
    store = SqlIdempotencyStore(store_url)
    try:
        records = store.records_for_run(run_id)
    finally:
        store.close()
    assert len(records) == steps, records
    assert all(r.state is TaskState.COMPLETED and r.owner for r in records), records


def _finished_runs(
    instance: DagsterInstance, wanted: dict[str, tuple[str, str]], timeout: float
) -> dict[str, DagsterRun]:
    """For each name of ``wanted``, the first finished run with its tag (name, value); waits
    ``timeout`` seconds at most (those not seen by then are missing)."""
    finished: dict[str, DagsterRun] = {}
    deadline = time.monotonic() + timeout
    while len(finished) < len(wanted) and time.monotonic() < deadline:
        for run in instance.get_runs():
            for name, (tag, value) in wanted.items():
                if name not in finished and run.is_finished and run.tags.get(tag) == value:
                    finished[name] = run
        time.sleep(1)
    return finished


def _failures(instance: DagsterInstance, run: DagsterRun) -> list[str]:
    return [
        str(entry.dagster_event.event_specific_data)[:1500]
        for entry in instance.all_logs(run.run_id)
        if entry.dagster_event is not None and entry.dagster_event.is_failure
    ]


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
        # the executor signs with it (the workers refuse unsigned messages)
        "DAGSTER_TASKIQ_SIGNING_KEY": queue.signing_key,
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
    wanted = {
        "schedule": ("dagster/schedule_name", "orders_schedule"),
        "sensor": ("dagster/sensor_name", "inbox_sensor"),
    }
    with (
        dagster_dev(home, ["-f", str(DAEMON_DEFINITIONS)], log, _executor_environment(queue)),
        DagsterInstance.from_config(str(home)) as instance,
    ):
        # the schedule ticks at the next whole minute
        finished = _finished_runs(instance, wanted, timeout=240)
        errors = {run.run_id: _failures(instance, run) for run in finished.values()}
    assert set(finished) == set(wanted), log.read_text(errors="replace")[-3000:]
    for run in finished.values():
        assert run.status is DagsterRunStatus.SUCCESS, (run.tags, errors[run.run_id])
        _completed_on_workers(store_url, run.run_id)
    assert finished["sensor"].tags["inbox_file"] == "orders-2026-12-05.csv"


LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""
DAYS = ["2026-11-02", "2026-11-03", "2026-11-04"]


def _launch_backfill(port: int, params: dict[str, Any]) -> str:
    """What the UI's "Materialize" dialog sends for a backfill; returns its id."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": LAUNCH_BACKFILL, "variables": {"params": params}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    result = answer["data"]["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", answer
    return str(result["backfillId"])


def test_a_single_run_backfill_over_three_partitions_succeeds_on_workers(
    workers_factory: Any, tmp_path: Path
) -> None:
    home = _home(tmp_path)
    store_url = f"sqlite:///{home / STORE_FILE}"  # the executor's default: the instance's
    (home / STORE_FILE).parent.mkdir(parents=True)
    queue = workers_factory(store_url)
    log = tmp_path / "dagster-dev.log"
    assets = [AssetKey("daily_orders"), AssetKey("daily_revenue")]
    with (
        dagster_dev(home, ["-m", CODE_LOCATION], log, _executor_environment(queue)) as port,
        DagsterInstance.from_config(str(home)) as instance,
    ):
        backfill_id = _launch_backfill(
            port,
            {
                "partitionNames": DAYS,
                "assetSelection": [{"path": key.path} for key in assets],
                "fromFailure": False,
            },
        )
        # the daemon's backfill loop submits the run (every 30 s or so)
        finished = _finished_runs(
            instance,
            {"backfill": ("dagster/backfill", backfill_id)},
            timeout=240,
        )
        assert finished, log.read_text(errors="replace")[-3000:]
        run = finished["backfill"]
        assert run.status is DagsterRunStatus.SUCCESS, _failures(instance, run)
        # one run for the three days, not a run a day
        assert len(instance.get_run_ids()) == 1
        materialized = {key: sorted(instance.get_materialized_partitions(key)) for key in assets}
        storage = Path(instance.storage_directory()) / "partitions"
        checks = [
            entry.dagster_event.event_specific_data
            for entry in instance.all_logs(
                run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
            )
            if entry.dagster_event is not None
        ]
    assert run.tags["dagster/asset_partition_range_start"] == DAYS[0]
    assert run.tags["dagster/asset_partition_range_end"] == DAYS[-1]
    assert materialized == {key: DAYS for key in assets}
    # each day's value was written by a worker and read by the next step on a worker
    revenue = {
        day: json.loads((storage / "daily_revenue" / f"{day}.json").read_text()) for day in DAYS
    }
    assert revenue == {day: sum(int(day[-2:]) * 10 + n for n in range(5)) for day in DAYS}
    assert [(check.passed, check.metadata["days"].value) for check in checks] == [(True, 3)]
    # daily_orders, daily_revenue and the revenue check (a backfill runs its assets' checks)
    _completed_on_workers(store_url, run.run_id, steps=3)
