"""A step a worker refuses because its run is over gets a STEP_FAILURE event, so that Dagster's
re-execution from failure runs it again.

Found by the chaos suite's ``run_killed`` scenario (docs/reliability.md): the run process of a
dynamic job was killed after ``emit`` succeeded; the mapped ``square`` copies still queued were
refused once the run was marked failed, and, with only an engine event to show for them, the
re-execution from failure took them as done and "succeeded" without them.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    ReexecutionOptions,
    execute_job,
    reconstructable,
)

from dagster_taskiq import OpExecutionTask, SqlIdempotencyStore, TaskState, idempotency_key
from dagster_taskiq.code_locations import pointer_for_job
from dagster_taskiq.instances import instance_ref_payload
from dagster_taskiq.worker import StepRunner
from dagster_taskiq.worker._step_runner import RunCache
from support import job_shapes
from support.executor_harness import SHAPES_LOCATIONS, InProcessWorkers, injected
from support.thread_broker import ThreadQueueBroker


def _task(instance: DagsterInstance, run: DagsterRun, step_key: str) -> OpExecutionTask:
    return OpExecutionTask(
        run_id=run.run_id,
        step_key=step_key,
        idempotency_key=idempotency_key(run.run_id, step_key),
        code=pointer_for_job(reconstructable(job_shapes.dynamic)),
        instance_ref=instance_ref_payload(instance),
        created_at=time.time(),
    )


def _failures(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    records = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    return {
        r.step_key: r.get_dagster_event().step_failure_data.error.message  # type: ignore[union-attr]
        for r in records
        if r.step_key is not None
    }


def test_a_mapped_step_refused_after_the_run_failed_is_re_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, home = tmp_path / "ledger", tmp_path / "home"
    ledger.mkdir()
    home.mkdir()
    monkeypatch.setenv(job_shapes.LEDGER_ENV, str(ledger))
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    with DagsterInstance.local_temp(str(home)) as instance:
        run = instance.create_run_for_job(job_shapes.dynamic)
        runner = StepRunner(SHAPES_LOCATIONS)
        assert runner.run(_task(instance, run, "emit")).state is TaskState.COMPLETED
        instance.report_run_failed(run)  # the run process died; run monitoring marks it failed

        refused = runner.run(_task(instance, run, "square[k1]"))

        assert refused.state is TaskState.FAILED
        assert refused.error_class == "RunNotRunnable"
        assert _failures(instance, run.run_id) == {
            "square[k1]": f"step not started: run {run.run_id} is FAILURE"
        }
        broker = ThreadQueueBroker()
        with (
            injected(broker, store),
            InProcessWorkers(lambda: broker, store, count=1),
            execute_job(
                reconstructable(job_shapes.dynamic),
                instance=instance,
                reexecution_options=ReexecutionOptions.from_failure(run.run_id, instance),
            ) as child,
        ):
            assert child.success
            child_run = child.run_id
    store.close()
    assert Counter(job_shapes.read_ledger(str(ledger), run.run_id)) == {"emit": 1}
    # The refused copy runs in the re-execution. The copies with no events at all do not:
    # Dagster (1.13) takes a mapped copy that never started as done (the reason for the failure
    # event; if this starts failing, Dagster's from-failure selection changed).
    assert Counter(job_shapes.read_ledger(str(ledger), child_run)) == {
        "square[k1]": 1,
        "total": 1,
    }


def test_a_worker_reads_a_run_once_and_its_status_before_every_step(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        run = instance.create_run_for_job(job_shapes.chain, run_config={})
        started = DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name)
        instance.handle_run_event(run.run_id, started)
        full_reads = []
        read = instance.get_run_by_id

        def counting(run_id: str) -> DagsterRun | None:
            full_reads.append(run_id)
            return read(run_id)

        instance.get_run_by_id = counting  # type: ignore[method-assign]
        cache = RunCache()
        first = cache.runnable(instance, run.run_id)
        assert first is not None
        assert first.status is DagsterRunStatus.STARTED
        assert cache.runnable(instance, run.run_id) is first
        assert len(full_reads) == 1  # the second step only asked for the status
        instance.report_run_canceling(run)
        canceling = cache.runnable(instance, run.run_id)
        assert canceling is not None
        assert canceling.status is DagsterRunStatus.CANCELING  # read fresh: the step is refused
        assert cache.runnable(instance, "no-such-run") is None
