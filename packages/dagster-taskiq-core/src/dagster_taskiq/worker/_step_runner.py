"""Run one step of a run in this process, as ``dagster api execute_step`` would.

The job's code is loaded once per code pointer and selection, and the Dagster instance once per
reference, so a long-lived worker pays for imports and definitions once, not per step. Events go
straight to the run's (shared) Dagster instance; the outcome is summarised for the store.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
import threading
from typing import Any, Protocol

import structlog
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
    deserialize_value,
)

from dagster_taskiq._dagster_compat import (
    ExecutionPlan,
    KnownExecutionState,
    ReconstructableJob,
    ReconstructableRepository,
    ResolvedRunConfig,
    RetryMode,
    SerializableErrorInfo,
    create_execution_plan,
    execute_plan_iterator,
    report_step_not_started,
    serializable_error_info_from_exc_info,
    step_plan,
)
from dagster_taskiq.code_locations import (
    CodeLocations,
    dagster_pointer,
    load_job_definition,
)
from dagster_taskiq.errors import CodeLocationError
from dagster_taskiq.instances import LogCapture, instance_from_ref
from dagster_taskiq.payloads import OpExecutionTask, TaskState
from dagster_taskiq.worker._fence import current_fence, install_event_fence
from dagster_taskiq.worker._quiet_events import QuietEvents
from dagster_taskiq.worker._step_logs import route_step_output

_log = structlog.get_logger("dagster_taskiq.worker")


@dataclasses.dataclass(frozen=True)
class StepOutcome:
    """What became of one run of a step, as the store records it."""

    state: TaskState
    error_class: str | None = None
    error_message: str | None = None
    traceback: str | None = None

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "state": self.state.value})

    @classmethod
    def from_json(cls, text: str) -> StepOutcome:
        data = json.loads(text)
        return cls(
            state=TaskState(data["state"]),
            error_class=data.get("error_class"),
            error_message=data.get("error_message"),
            traceback=data.get("traceback"),
        )

    @classmethod
    def failed(cls, error_class: str, message: str, tb: str | None = None) -> StepOutcome:
        return cls(TaskState.FAILED, error_class, message, tb)

    @classmethod
    def from_error(cls, error: SerializableErrorInfo | None, fallback: str) -> StepOutcome:
        if error is None:
            return cls.failed(fallback, fallback)
        return cls.failed(error.cls_name or fallback, error.message.strip(), error.to_string())


def logged_outcome(instance: DagsterInstance, task: OpExecutionTask) -> StepOutcome | None:
    """The outcome a previous holder of this claim already wrote to the event log, if any.

    A worker that dies after its step's outcome event and before ``finish`` leaves the record
    RUNNING; the message comes back and the step is claimed again (a higher fence token). Running
    it again would put a second outcome in the event log, so a re-claimed step (token > 1, known
    from the current fence) first looks for this retry's outcome in the log and, if it is there,
    reports it without running anything. First claims skip the look-up (one query per re-claim).
    """
    fence = current_fence()
    if fence is None or fence.token <= 1:
        return None
    counts = {kind: 0 for kind in _OUTCOME_KINDS}
    for entry in instance.all_logs(task.run_id, of_type=set(_OUTCOME_KINDS)):
        event = entry.dagster_event
        if event is not None and event.step_key == task.step_key:
            counts[event.event_type] += 1
    if counts[DagsterEventType.STEP_SUCCESS]:
        outcome = StepOutcome(TaskState.COMPLETED)
    elif counts[DagsterEventType.STEP_FAILURE]:
        outcome = StepOutcome.failed("StepFailure", "the step's failure is in the event log")
    elif counts[DagsterEventType.STEP_UP_FOR_RETRY] > task.retry_number:
        outcome = StepOutcome.failed(
            "StepUpForRetry", f"try {task.retry_number} is up for retry in the event log"
        )
    else:
        return None
    _log.warning(
        "step_outcome_already_logged",
        key=task.idempotency_key,
        token=fence.token,
        state=outcome.state.value,
    )
    return outcome


_OUTCOME_KINDS = (
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_UP_FOR_RETRY,
)


class RunsSteps(Protocol):
    """What the worker needs of a step runner (in-thread or in a subprocess)."""

    def run(self, task: OpExecutionTask) -> StepOutcome: ...


_UNRUNNABLE = (DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED)


_RUNNABLE = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.MANAGED,
]


class RunCache:
    """The runs a worker's steps belong to, read once per run, with their status read fresh.

    A run's config, tags and origin do not change while it runs, so its ``DagsterRun`` is read
    (and deserialised) by the first of its steps on this worker only; every step still checks,
    with a query that deserialises nothing, that the run may run steps (not over, not being
    cancelled). A run that may not is read again in full, for its status."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._runs: collections.OrderedDict[str, DagsterRun] = collections.OrderedDict()
        self._lock = threading.Lock()

    def runnable(self, instance: DagsterInstance, run_id: str) -> DagsterRun | None:
        """The run: the cached one while it may run steps, else as stored now (or None)."""
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            if instance.get_run_ids(RunsFilter(run_ids=[run_id], statuses=_RUNNABLE), limit=1):
                return run
            with self._lock:
                self._runs.pop(run_id, None)
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in _RUNNABLE:
            with self._lock:
                self._runs[run_id] = run
                while len(self._runs) > self._size:
                    self._runs.popitem(last=False)
        return run


class PlanCache:
    """Each run's whole execution plan, built by the first of its steps on this worker and cut
    to one step for each (``step_plan``): building the plan is proportional to the job's size,
    cutting it is not. A step whose known state holds dynamic mappings or output versions (the
    plan's steps depend on them) gets its plan built from scratch, as before."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._plans: collections.OrderedDict[str, tuple[Any, ResolvedRunConfig, ExecutionPlan]]
        self._plans = collections.OrderedDict()
        self._lock = threading.Lock()

    def plan(
        self,
        job: ReconstructableJob,
        run: DagsterRun,
        step_key: str,
        known_state: KnownExecutionState | None,
    ) -> ExecutionPlan:
        if known_state is not None and (
            known_state.dynamic_mappings or known_state.step_output_versions
        ):
            return create_execution_plan(
                job,
                run_config=run.run_config,
                step_keys_to_execute=[step_key],
                known_state=known_state,
                repository_load_data=job.repository.repository_load_data,
            )
        with self._lock:
            entry = self._plans.get(run.run_id)
        if entry is None:
            job_def = job.get_definition()
            whole = create_execution_plan(
                job,
                run_config=run.run_config,
                repository_load_data=job.repository.repository_load_data,
            )
            entry = (job_def, ResolvedRunConfig.build(job_def, run.run_config), whole)
            with self._lock:
                self._plans[run.run_id] = entry
                while len(self._plans) > self._size:
                    self._plans.popitem(last=False)
        job_def, resolved_run_config, whole = entry
        return step_plan(whole, job_def, resolved_run_config, step_key, known_state)


class StepRunner:
    """Runs steps in the calling thread; caches instances and jobs across steps (thread-safe).

    ``log_capture``: how steps' stdout/stderr reach the compute logs (``LogCapture``): per step
    thread (the default), or Dagster's own capture, which redirects the whole process, so only
    a process that runs one step at a time may use it.
    """

    def __init__(
        self, code_locations: CodeLocations, *, log_capture: LogCapture = LogCapture.THREAD
    ) -> None:
        self.code_locations = code_locations
        self.log_capture = log_capture
        self._jobs: dict[tuple[Any, ...], ReconstructableJob] = {}
        self._lock = threading.Lock()
        self._runs = RunCache()
        self._plans = PlanCache()
        self._quiet = QuietEvents(capture_compute_logs=log_capture is not LogCapture.NONE)

    def run(self, task: OpExecutionTask) -> StepOutcome:
        """Run ``task``'s step to its end; never raises for a failure of the step itself."""
        try:
            self.code_locations.check(task.code)
        except CodeLocationError as exc:
            return StepOutcome.failed("CodeLocationRefused", str(exc))
        if self.log_capture is LogCapture.THREAD:
            route_step_output()
        instance = instance_from_ref(task.instance_ref, log_capture=self.log_capture)
        install_event_fence(instance, quiet=self._quiet)
        run = self._runs.runnable(instance, task.run_id)
        if run is None:
            return StepOutcome.failed(
                "RunNotFound", f"run {task.run_id} does not exist in the instance (deleted?)"
            )
        logged = logged_outcome(instance, task)
        if logged is not None:
            return logged
        if run.is_finished or run.status in _UNRUNNABLE:
            # A failure event, not just a note: re-execution from failure must run this step
            # again (Dagster takes a mapped step with no events as done; see the compat module).
            message = f"step not started: run {task.run_id} is {run.status.value}"
            if run.status is DagsterRunStatus.SUCCESS:  # nothing to re-execute: just a note
                instance.report_engine_event(message, run, step_key=task.step_key)
            else:
                report_step_not_started(instance, run, task.step_key, message, "RunNotRunnable")
            return StepOutcome.failed("RunNotRunnable", message)
        try:
            return self._execute(task, instance, run)
        except Exception:
            error = serializable_error_info_from_exc_info(sys.exc_info())
            instance.report_engine_event(
                "An exception was thrown during step execution that is likely a framework "
                f"error, rather than an error in user code: {error.message.strip()}",
                run,
                step_key=task.step_key,
            )
            return StepOutcome.from_error(error, "FrameworkError")

    def _execute(
        self, task: OpExecutionTask, instance: DagsterInstance, run: DagsterRun
    ) -> StepOutcome:
        job = self._job(task, run, instance)
        known_state = (
            deserialize_value(json.dumps(task.known_state), KnownExecutionState)
            if task.known_state is not None
            else None
        )
        plan = self._plans.plan(job, run, task.step_key, known_state)
        outcome: StepOutcome | None = None
        for event in execute_plan_iterator(
            plan,
            job,
            run,
            instance,
            retry_mode=RetryMode(task.retry_mode),
            run_config=run.run_config,
        ):
            if event.step_key != task.step_key:
                continue
            if event.is_step_success:
                outcome = StepOutcome(TaskState.COMPLETED)
            elif event.is_step_failure:
                outcome = StepOutcome.from_error(event.step_failure_data.error, "StepFailure")
            elif event.is_step_up_for_retry:
                outcome = StepOutcome.from_error(event.step_retry_data.error, "StepUpForRetry")
        if outcome is None:
            return StepOutcome.failed(
                "NoStepOutcome", f"step {task.step_key} ended without a success or failure event"
            )
        return outcome

    def _job(
        self, task: OpExecutionTask, run: DagsterRun, instance: DagsterInstance
    ) -> ReconstructableJob:
        """The (cached) reconstructable job of the run, with its selection and load data."""
        key = (
            task.code,
            run.resolved_op_selection and frozenset(run.resolved_op_selection),
            run.asset_selection and frozenset(run.asset_selection),
            run.asset_check_selection and frozenset(run.asset_check_selection),
            run.execution_plan_snapshot_id if run.has_repository_load_data else None,
        )
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                repository_load_data = None
                if run.has_repository_load_data and run.execution_plan_snapshot_id:
                    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
                    repository_load_data = snapshot.repository_load_data
                repository = ReconstructableRepository(dagster_pointer(task.code))
                job = (
                    repository.get_reconstructable_job(task.code.job_name)
                    .with_repository_load_data(repository_load_data)
                    .get_subset(
                        op_selection=run.resolved_op_selection,
                        asset_selection=run.asset_selection,
                        asset_check_selection=run.asset_check_selection,
                    )
                )
                load_job_definition(job)  # import the code now, one thread at a time
                self._jobs[key] = job
                _log.info(
                    "job_loaded", job=task.code.job_name, code=dagster_pointer(task.code).describe()
                )
            return job
