"""Every Dagster internal (``dagster._*``) that dagster-taskiq uses, and nothing else.

Dagster has no public API for an executor that delegates steps to other processes: its own
step-delegating executors (dagster-k8s, dagster-docker) and dagster-celery import the same
internals. They are confined to this module; ``tests/test_dagster_compat.py`` fails loudly, naming
the symbol, if a Dagster upgrade moves or changes one of them.

What each is for:
* ``ActiveExecution``, ``InstanceConcurrencyContext``, ``PlanOrchestrationContext``,
  ``ExecutionPlan``, ``ExecutionStep``, ``IStepContext``: the executor's bookkeeping of the plan,
  exactly as ``StepDelegatingExecutor`` does it.
* ``DagsterEvent``/``EngineEventData``/``StepFailureData``: engine events and synthesized step
  failures (a dead-lettered message, a worker that lost the step).
* ``KnownExecutionState``: the dynamic mappings and retry counts a worker needs for one step.
* ``RetryMode``/``get_retries_config``: Dagster's ``retries`` executor config and its modes.
* ``get_tag_concurrency_limits_config``/``get_step_dependency_config_field``/
  ``StepDependencyConfig``: the ``tag_concurrency_limits`` and ``step_dependency_config``
  executor config of ``multiprocess_executor`` and ``k8s_job_executor``, same shape and meaning.
* ``InstanceRef``/``ConfigurableClassData``: how a worker opens the run's instance (without
  process-wide compute log capture on thread workers, see ``with_step_thread_logs``).
* ``ComputeLogManager``/``LocalComputeLogManager``/``CloudStorageComputeLogManager``/
  ``CapturedLogContext``/``ComputeIOType``/``touch_file``: a thread worker's compute log manager
  (``worker/_step_logs.py``) writes each step's stdout/stderr into the files of the instance's
  own manager, as its ``capture_logs`` would, and marks them complete as it does.
* ``create_execution_plan``/``execute_plan_iterator``/``ReconstructableJob``/
  ``ReconstructableRepository``/code pointers: run one step in the worker, as
  ``dagster api execute_step`` does (``dagster._cli.api._execute_step_command_body``).
* ``SerializableErrorInfo``/``serializable_error_info_from_exc_info``: error payloads of events.
* ``EventLogCursor``: tail a run's event log from a cursor.
* ``raise_interrupts_as``: a step process turns SIGINT into an interrupted step.
* ``report_step_not_started``: the STEP_FAILURE a worker writes for a step it refuses because
  the run is over (``DagsterEvent``, ``StepHandle``, ``StepKind``); without it, Dagster's
  re-execution from failure treats a mapped step that never started as done
  (``dagster._core.execution.plan.state._derive_state_of_past_run``).
* ``ResolvedRunConfig``/``step_plan``: a worker builds a run's whole execution plan once and
  cuts it to each step (``ExecutionPlan.build_subset_plan``, what ``ExecutionPlan.build`` does
  itself with ``step_keys_to_execute``), instead of building the plan again for every step
  (2 ms a step for a 52-step job).
* ``pooled_event_log_storage``: the executor reads the run's events through a second event
  log storage of the instance's kind that keeps its connection open (the webserver's setting,
  ``optimize_for_webserver``): dagster-postgres opens a connection per statement otherwise, 5 ms
  of the 6 a read of the run's new events costs.
* ``with_python_log_handlers_once``: an instance that builds its dagster.yaml ``python_logs``
  handlers once, not on every step (``DagsterInstance.get_yaml_python_handlers`` runs
  ``logging.config.dictConfig`` each time, which deadlocks threads that are logging).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRun, Field
from dagster._core.code_pointer import (
    CodePointer as DagsterCodePointer,
)
from dagster._core.code_pointer import (
    FileCodePointer,
    ModuleCodePointer,
    PackageCodePointer,
)
from dagster._core.definitions.reconstruct import (
    ReconstructableJob,
    ReconstructableRepository,
)
from dagster._core.event_api import EventLogCursor
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import create_execution_plan, execute_plan_iterator
from dagster._core.execution.context.system import IStepContext, PlanOrchestrationContext
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.handle import StepHandle, UnresolvedStepHandle
from dagster._core.execution.plan.instance_concurrency_context import (
    InstanceConcurrencyContext,
)
from dagster._core.execution.plan.objects import StepFailureData
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.state import KnownExecutionState
from dagster._core.execution.plan.step import ExecutionStep, StepKind
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.retries import get_retries_config as _get_retries_config
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.execution.step_dependency_config import (
    get_step_dependency_config_field as _get_step_dependency_config_field,
)
from dagster._core.execution.tags import (
    get_tag_concurrency_limits_config as _get_tag_concurrency_limits_config,
)
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.cloud_storage_compute_log_manager import (
    CloudStorageComputeLogManager,
)
from dagster._core.storage.compute_log_manager import (
    CapturedLogContext,
    ComputeIOType,
    ComputeLogManager,
)
from dagster._core.storage.event_log.base import EventLogStorage
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._serdes import ConfigurableClassData
from dagster._utils import touch_file
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster._utils.interrupts import raise_interrupts_as
from dagster_shared.error import SerializableErrorInfo

__all__ = [
    "ActiveExecution",
    "CapturedLogContext",
    "CloudStorageComputeLogManager",
    "ComputeIOType",
    "ComputeLogManager",
    "ConfigurableClassData",
    "DagsterCodePointer",
    "DagsterEvent",
    "EngineEventData",
    "EventLogCursor",
    "EventLogStorage",
    "ExecutionPlan",
    "ExecutionStep",
    "FileCodePointer",
    "IStepContext",
    "InstanceConcurrencyContext",
    "InstanceRef",
    "KnownExecutionState",
    "LocalComputeLogManager",
    "ModuleCodePointer",
    "PackageCodePointer",
    "PlanOrchestrationContext",
    "ReconstructableJob",
    "ReconstructableRepository",
    "ResolvedRunConfig",
    "RetryMode",
    "SerializableErrorInfo",
    "StepDependencyConfig",
    "StepFailureData",
    "create_execution_plan",
    "execute_plan_iterator",
    "get_retries_config",
    "get_step_dependency_config_field",
    "get_tag_concurrency_limits_config",
    "pooled_event_log_storage",
    "raise_interrupts_as",
    "report_step_not_started",
    "seconds_until_due",
    "serializable_error_info_from_exc_info",
    "step_plan",
    "touch_file",
    "with_python_log_handlers_once",
    "with_step_thread_logs",
    "without_compute_log_capture",
]


def report_step_not_started(
    instance: DagsterInstance, run: DagsterRun, step_key: str, message: str, cls_name: str
) -> None:
    """Write a STEP_FAILURE for ``step_key`` of ``run``: the step never started, the run is over.

    Dagster writes nothing for a step that a finished run never started, and its re-execution
    from failure then re-runs such a step only if it is not a mapped copy of a dynamic output
    whose producer succeeded: those are taken as done, and the re-execution "succeeds" without
    them. A failure event puts the step in the re-execution like any failed step. Built the way
    ``DagsterEvent.from_step`` builds it, without the step context a running step would have
    (the refusing worker has no plan context for a run that is over).
    """
    handle = StepHandle.parse_from_key(step_key)
    if isinstance(handle, UnresolvedStepHandle):  # a task always names a resolved step
        raise ValueError(f"step key {step_key!r} names an unresolved mapped step")
    failure: Any = StepFailureData(  # type: ignore[no-untyped-call]
        error=SerializableErrorInfo(message=message, stack=[], cls_name=cls_name),
        user_failure_data=None,
    )
    event = DagsterEvent(
        event_type_value=DagsterEventType.STEP_FAILURE.value,
        job_name=run.job_name,
        step_handle=handle,
        node_handle=handle.node_handle,
        step_kind_value=StepKind.COMPUTE.value,
        logging_tags={"job_name": run.job_name, "run_id": run.run_id, "step_key": step_key},
        event_specific_data=failure,
        message=f'Execution of step "{step_key}" failed: {message}',
        pid=os.getpid(),
    )
    instance.report_dagster_event(event, run_id=run.run_id, log_level=logging.ERROR)


def step_plan(
    whole: ExecutionPlan,
    job_def: Any,
    resolved_run_config: ResolvedRunConfig,
    step_key: str,
    known_state: KnownExecutionState | None,
) -> ExecutionPlan:
    """``whole`` (a run's plan, built without known state) cut to ``step_key``, with the
    step's ``known_state``: what ``create_execution_plan(..., step_keys_to_execute=[step_key],
    known_state=known_state)`` builds, when the known state holds no dynamic mappings (which
    change the plan's steps) and no output versions (which the cut would drop); callers check."""
    plan: ExecutionPlan = whole.build_subset_plan([step_key], job_def, resolved_run_config)
    return plan._replace(known_state=known_state or KnownExecutionState())


def pooled_event_log_storage(instance: DagsterInstance) -> EventLogStorage | None:
    """A new event log storage like ``instance``'s, keeping its connection open, or None when
    that gains nothing (SQLite: a file; in-memory and unreferenceable instances). Dispose of it
    after use."""
    storage = instance.event_log_storage
    optimize = getattr(type(storage), "optimize_for_webserver", None)
    if optimize is None or optimize is EventLogStorage.optimize_for_webserver:
        return None  # no connection to keep (SQLite, in-memory)
    try:
        data = instance.get_ref().event_storage_data
    except Exception:  # an ephemeral instance has no reference to open again
        return None
    if data is None:
        return None
    pooled: EventLogStorage = data.rehydrate(as_type=EventLogStorage)  # type: ignore[type-abstract]
    pooled.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=2)
    return pooled


def get_tag_concurrency_limits_config() -> Field:
    """``multiprocess_executor``'s ``tag_concurrency_limits`` config field."""
    field: Field = _get_tag_concurrency_limits_config()  # type: ignore[no-untyped-call]
    return field


def get_step_dependency_config_field() -> Field:
    """``multiprocess_executor``'s ``step_dependency_config`` config field."""
    field: Field = _get_step_dependency_config_field()  # type: ignore[no-untyped-call]
    return field


def get_retries_config() -> Field:
    """Dagster's ``retries`` executor config field (enabled / disabled)."""
    field: Field = _get_retries_config()  # type: ignore[no-untyped-call]
    return field


def seconds_until_due(active: ActiveExecution) -> float | None:
    """Seconds until a step waiting for its RetryPolicy delay (or a pool slot) is due.

    ``ActiveExecution.sleep_interval`` answers 0 both for "due now" and "nothing waits"; called
    right after ``get_steps_to_execute`` (which launches what is due), 0 means nothing waits.
    """
    seconds: Any = active.sleep_interval()  # type: ignore[no-untyped-call]
    return float(seconds) if seconds and seconds > 0 else None


def with_step_thread_logs(ref: InstanceRef) -> InstanceRef:
    """``ref`` with the thread workers' compute log manager around the instance's own.

    Dagster captures a step's stdout/stderr by redirecting the whole process's file descriptors,
    which is not safe when several steps run on threads of one worker. A thread worker's instance
    uses ``dagster_taskiq.worker._step_logs.StepThreadLogManager`` instead, which captures each
    step thread's ``sys.stdout``/``sys.stderr`` into the same files (same log keys) the
    instance's own manager (kept as its ``inner``) reads for the UI.
    """
    inner = ref.compute_logs_data
    return ref._replace(
        compute_logs_data=ConfigurableClassData(
            "dagster_taskiq.worker._step_logs",
            "StepThreadLogManager",
            json.dumps(  # YAML: JSON is YAML
                {
                    "module": inner.module_name,
                    "class": inner.class_name,
                    "config_yaml": inner.config_yaml,
                }
            ),
        )
    )


def without_compute_log_capture(ref: InstanceRef) -> InstanceRef:
    """``ref`` with Dagster's no-op compute log manager: steps' output is not captured."""
    return ref._replace(
        compute_logs_data=ConfigurableClassData(
            "dagster._core.storage.noop_compute_log_manager", "NoOpComputeLogManager", "{}"
        )
    )


def with_python_log_handlers_once(instance: Any) -> Any:
    """``instance``, building its dagster.yaml ``python_logs`` handlers now and only now.

    Dagster creates a log manager for every step, and each time (whenever the instance has any
    dagster.yaml settings) calls ``logging.config.dictConfig``, which takes the logging module's
    lock and then closes and flushes every handler in the process. A thread worker runs steps
    side by side: a step that is emitting a record holds its handler's lock and then wants the
    logging module's lock, so the two deadlock (seen with a dagster.yaml on PostgreSQL: every
    step thread of the worker stuck in ``logging._acquireLock``). The handlers depend only on
    the instance's settings, so they are built once here and the same ones are handed to every
    step; with no ``python_logs.dagster_handler_config`` there are none and ``dictConfig`` is
    never called.
    """
    config = instance.get_python_log_dagster_handler_config()
    handlers = list(instance.get_yaml_python_handlers()) if config else []
    instance.get_yaml_python_handlers = lambda: handlers
    return instance
