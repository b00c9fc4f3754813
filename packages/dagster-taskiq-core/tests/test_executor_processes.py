"""The executor with real ``dagster-taskiq worker`` processes over every real broker backend.

The job-shape matrix, a duplicate copy of a completed step's message and a worker SIGKILLed
mid-step run on each backend: ``sqs`` (moto), ``redis`` (the local Redis), ``nats`` (the
local NATS JetStream) and ``rabbitmq`` (the local RabbitMQ). A worker SIGTERMed mid-step
(graceful) and a step whose message is dead-lettered because every worker that takes it dies run
on SQS.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, reconstructable

from dagster_taskiq import OpExecutionTask, SqlIdempotencyStore, TaskState, idempotency_key
from dagster_taskiq.backends import create_broker
from dagster_taskiq.code_locations import pointer_for_job
from dagster_taskiq.executor._broker_thread import BrokerThread
from dagster_taskiq.instances import instance_ref_payload
from support import job_shapes
from support.executor_harness import RunReport, run_job
from support.worker_processes import (
    NatsTarget,
    RabbitMqTarget,
    RedisTarget,
    SqsTarget,
    Target,
    WorkerProcesses,
    ledger_lines,
)
from test_executor_shapes import SHAPES, in_process_reference

pytestmark = pytest.mark.sqs_server


BACKENDS = ["sqs", "redis", "nats", "rabbitmq"]


def _target(request: pytest.FixtureRequest, backend: str) -> Target:
    if backend == "sqs":
        sqs_server = request.getfixturevalue("sqs_server")
        return SqsTarget(endpoint_url=sqs_server.endpoint_url, visibility_timeout=3)
    targets: dict[str, type[RedisTarget | NatsTarget | RabbitMqTarget]] = {
        "redis": RedisTarget,
        "nats": NatsTarget,
        "rabbitmq": RabbitMqTarget,
    }
    target: Target = targets[backend](visibility_timeout=3)
    target.require()
    return target


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One DAGSTER_HOME, store, queue and two worker processes per backend for the module."""
    target = _target(request, request.param)
    root = tmp_path_factory.mktemp(f"cluster-{request.param}")
    (root / "home").mkdir()
    (root / "ledger").mkdir()
    (root / "logs").mkdir()
    store_url = f"sqlite:///{root / 'store.db'}"
    env = {
        job_shapes.LEDGER_ENV: str(root / "ledger"),
        "DAGSTER_TASKIQ_TEST_SLOW_SECONDS": "4",
        "DAGSTER_TASKIQ_TEST_FAIL_ONCE": str(root / "failed-once"),
    }
    with (
        DagsterInstance.local_temp(str(root / "home")) as instance,
        WorkerProcesses(target, store_url, env, count=2, log_dir=root / "logs") as workers,
    ):
        store = SqlIdempotencyStore(store_url)
        yield {
            "instance": instance,
            "store": store,
            "store_url": store_url,
            "target": target,
            "workers": workers,
            "ledger": root / "ledger",
        }
        store.close()
    target.cleanup()


def _run(cluster: dict[str, Any], job: Any, **kwargs: Any) -> RunReport:
    run_config = {**(kwargs.pop("run_config", None) or {})}
    run_config.update(cluster["target"].run_config(cluster["store_url"]))
    return run_job(job, cluster["instance"], cluster["store"], run_config=run_config, **kwargs)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shape_on_worker_processes(
    shape: str, cluster: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(job_shapes.LEDGER_ENV, str(cluster["ledger"]))
    job_fn, run_config, tags, nodes = SHAPES[shape]
    expected = in_process_reference(job_fn, run_config, tags, nodes)
    report = _run(cluster, job_fn, run_config=run_config, tags=tags, output_nodes=nodes)
    logs = cluster["workers"].logs()
    assert (report.success, report.outcomes) == expected[:2], logs[-3000:]
    assert report.outputs == expected[2]
    assert report.materializations == expected[3]
    assert all(r.state.is_final for r in report.records)
    assert all(n == 1 for n in report.success_events.values())
    runs = Counter(line[0] for line in ledger_lines(cluster["ledger"], report.run_id))
    tries = {"flaky": 3} if shape == "retry_policy" else {}
    assert all(count == tries.get(step, 1) for step, count in runs.items()), runs


def test_duplicate_copy_of_a_completed_step_is_acked_without_running(
    cluster: dict[str, Any],
) -> None:
    report = _run(cluster, job_shapes.diamond)
    assert report.success
    before = ledger_lines(cluster["ledger"], report.run_id)
    target: Target = cluster["target"]
    _send_copy(cluster, report.run_id, "add", job_shapes.diamond)
    deadline = time.monotonic() + 30
    while target.depth() > 0:
        assert time.monotonic() < deadline, "the duplicate was never acked"
        time.sleep(0.2)
    assert ledger_lines(cluster["ledger"], report.run_id) == before  # no body ran again
    assert f'"key": "{report.run_id}:add"' in cluster["workers"].logs()
    assert "claim_lost_acked_without_running" in cluster["workers"].logs()
    record = cluster["store"].get(f"{report.run_id}:add")
    assert (record.state, record.attempt) == (TaskState.COMPLETED, 1)


def test_worker_sigkilled_mid_step_is_replaced_and_the_step_rerun(
    cluster: dict[str, Any],
) -> None:
    report, signalled = _signal_the_slow_steps_worker(cluster, signal.SIGKILL)
    killed = [pid for pid, _ in signalled]
    assert report.success, cluster["workers"].logs()[-3000:]
    lines = [line for line in ledger_lines(cluster["ledger"], report.run_id) if line[0] == "slow"]
    starts = [line for line in lines if line[4] == "start"]
    ends = [line for line in lines if line[4] == "end"]
    assert len(starts) == 2  # killed once, run again once
    assert len(ends) == 1
    assert int(ends[0][2]) != killed[0]
    record = cluster["store"].get(f"{report.run_id}:slow")
    assert record.state is TaskState.COMPLETED
    assert record.attempt == 2  # the second claim, after the first worker's lease expired
    assert report.success_events == {"slow": 1, "add_one": 1}


@pytest.mark.parametrize("cluster", ["sqs"], indirect=True)
def test_worker_sigtermed_mid_step_finishes_it_within_the_grace_period(
    cluster: dict[str, Any],
) -> None:
    report, stopped = _signal_the_slow_steps_worker(cluster, signal.SIGTERM)
    pid, process = stopped[0]
    assert report.success, cluster["workers"].logs()[-3000:]
    lines = [line for line in ledger_lines(cluster["ledger"], report.run_id) if line[0] == "slow"]
    # the stopping worker finished the step it held (4 s, within its 5 s grace) and nobody re-ran it
    assert [(line[2], line[4]) for line in lines] == [(str(pid), "start"), (str(pid), "end")]
    assert process.wait(30) == 0  # then it exited cleanly
    record = cluster["store"].get(f"{report.run_id}:slow")
    assert (record.state, record.attempt) == (TaskState.COMPLETED, 1)
    assert report.success_events == {"slow": 1, "add_one": 1}


def _signal_the_slow_steps_worker(
    cluster: dict[str, Any], signum: signal.Signals
) -> tuple[Any, list[tuple[int, Any]]]:
    """Run ``slow_job``; once its ``slow`` step has started, send its worker ``signum``.
    The run's report, and the worker signalled (its pid and process)."""
    signalled: list[tuple[int, Any]] = []

    def signal_when_started() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = cluster["instance"].get_runs()
            if runs:
                lines = [
                    line
                    for line in ledger_lines(cluster["ledger"], runs[0].run_id)
                    if line[0] == "slow"
                ]
                if lines:
                    pid = int(lines[0][2])
                    process = next(p for p in cluster["workers"].processes if p.pid == pid)
                    cluster["workers"].kill(pid, signum)
                    signalled.append((pid, process))
                    return
            time.sleep(0.05)

    for run in cluster["instance"].get_runs():
        cluster["instance"].delete_run(run.run_id)
    signaller = threading.Thread(target=signal_when_started)
    signaller.start()
    report = _run(cluster, job_shapes.slow_job)
    signaller.join()
    assert signalled, "the slow step never started"
    return report, signalled


def _send_copy(cluster: dict[str, Any], run_id: str, step: str, job: Any) -> None:
    """Send another copy of a step's message through the cluster's backend, as a resend would be.

    The copy has its own enqueue attempt (so deduplication lets it through) and no known
    state: a worker must drop it at the claim, before anything else of it matters.
    """
    task = OpExecutionTask(
        run_id=run_id,
        step_key=step,
        idempotency_key=idempotency_key(run_id, step),
        code=pointer_for_job(reconstructable(job)),
        instance_ref=instance_ref_payload(cluster["instance"]),
        created_at=time.time(),
        enqueue_attempt=7,
    )
    target = cluster["target"]
    broker = BrokerThread(create_broker(target.backend, target.broker_settings()))
    try:
        broker.send([task])
    finally:
        broker.close()


def test_a_dead_lettered_step_fails_the_run_with_the_reason(
    sqs_server: Any, tmp_path: Path
) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "ledger").mkdir()
    (tmp_path / "logs").mkdir()
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    target = SqsTarget(
        endpoint_url=sqs_server.endpoint_url, visibility_timeout=2, max_receive_count=2
    )
    env = {job_shapes.LEDGER_ENV: str(tmp_path / "ledger"), "DAGSTER_TASKIQ_TEST_DIE": "1"}
    started = time.monotonic()
    with (
        DagsterInstance.local_temp(str(tmp_path / "home")) as instance,
        WorkerProcesses(target, store_url, env, count=2, log_dir=tmp_path / "logs") as workers,
    ):
        store = SqlIdempotencyStore(store_url)
        report = run_job(
            job_shapes.poison,
            instance,
            store,
            run_config=target.run_config(store_url),
        )
        store.close()
    assert time.monotonic() - started < 90
    assert not report.success
    assert report.outcomes["kills_its_worker"] == "failure"
    assert report.outcomes.get("add_one") != "success"  # never ran: its input failed
    failure = next(e for e in report.events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "dead-lettered after" in message, message
    record = next(r for r in report.records if r.step_key == "kills_its_worker")
    assert record.state is TaskState.FAILED
    assert record.result is not None
    assert record.result.error_class == "DeadLettered"
    assert workers.started >= 4  # the two first workers died and were replaced
    assert len(ledger_lines(tmp_path / "ledger", report.run_id)) >= 2
