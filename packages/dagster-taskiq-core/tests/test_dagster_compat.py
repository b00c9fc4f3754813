"""Fails loudly, naming the symbol, if a Dagster upgrade moves an internal we rely on."""

from __future__ import annotations

import ast
import gc
import inspect
import pathlib

import pytest

import dagster_taskiq
from dagster_taskiq import _dagster_compat as compat

SRC = pathlib.Path(dagster_taskiq.__file__).parent

# name -> attributes of it that our code calls
USED = {
    "ActiveExecution": [
        "get_steps_to_execute",
        "handle_event",
        "verify_complete",
        "plan_events_iterator",
        "concurrency_event_iterator",
        "get_known_state",
        "check_for_interrupts",
        "mark_interrupted",
        "rebuild_from_events",
        "get_step_by_key",
        "sleep_interval",
        "is_complete",
    ],
    "PlanOrchestrationContext": ["for_step", "reconstructable_job", "resume_from_failure"],
    "DagsterEvent": ["engine_event"],
    "EngineEventData": ["interrupted"],
    "KnownExecutionState": ["get_retry_state"],
    "ReconstructableRepository": ["get_reconstructable_job"],
    "ReconstructableJob": ["with_repository_load_data", "get_subset"],
    "RetryMode": ["for_inner_plan", "from_config"],
    "EventLogCursor": ["parse", "from_storage_id"],
    "ExecutionPlan": ["build_subset_plan", "_replace", "known_state", "step_keys_to_execute"],
    "ResolvedRunConfig": ["build"],
    "EventLogStorage": ["optimize_for_webserver", "get_records_for_run", "dispose"],
    "InstanceRef": ["event_storage_data"],
}


@pytest.mark.parametrize("name", compat.__all__)
def test_every_internal_still_exists(name: str) -> None:
    assert getattr(compat, name, None) is not None, f"dagster moved {name}"


@pytest.mark.parametrize(("name", "attrs"), sorted(USED.items()))
def test_internals_keep_the_members_we_call(name: str, attrs: list[str]) -> None:
    cls = getattr(compat, name)
    missing = [a for a in attrs if not hasattr(cls, a)]
    assert not missing, f"dagster's {name} no longer has {missing}"


def test_execute_plan_iterator_signature() -> None:
    params = inspect.signature(compat.execute_plan_iterator).parameters
    for name in ("execution_plan", "job", "dagster_run", "instance", "retry_mode", "run_config"):
        assert name in params, f"execute_plan_iterator lost parameter {name}"
    params = inspect.signature(compat.create_execution_plan).parameters
    for name in ("run_config", "step_keys_to_execute", "known_state", "repository_load_data"):
        assert name in params, f"create_execution_plan lost parameter {name}"


def test_event_log_storage_can_watch_runs() -> None:
    from dagster._core.storage.event_log.base import EventLogStorage  # noqa: PLC0415

    for method in ("watch", "end_watch", "default_run_scoped_event_tailer_offset"):
        assert hasattr(EventLogStorage, method), f"EventLogStorage lost {method}"


def _parse(source: str) -> ast.Module:
    """``ast.parse`` with the garbage collector off: on CPython 3.11 a finalizer that runs
    Python code in the middle of the parse (an earlier test's pending asyncio task, logging
    "Task was destroyed") makes it fail with "AST constructor recursion depth mismatch"."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if enabled:
            gc.enable()


def test_only_the_compat_module_imports_dagster_internals() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "_dagster_compat.py":
            continue
        tree = _parse(path.read_text())
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            offenders += [
                f"{path.relative_to(SRC)}: {m}"
                for m in modules
                if m.startswith(("dagster._", "dagster_shared"))
            ]
    assert offenders == []


def test_core_never_imports_the_backend_packages() -> None:
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for package in (
            "dagster_taskiq_sqs",
            "dagster_taskiq_redis",
            "dagster_taskiq_nats",
            "dagster_taskiq_rabbitmq",
            "dagster_taskiq_testing",
        ):
            assert package not in text, path


def test_step_log_managers_get_python_log_handlers_without_dict_config(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster rebuilds dagster.yaml's python_logs handlers with ``dictConfig`` per step; the
    worker's instances must not (it deadlocks step threads that are logging)."""
    import logging.config  # noqa: PLC0415

    from dagster import DagsterInstance  # noqa: PLC0415

    from dagster_taskiq._dagster_compat import with_python_log_handlers_once  # noqa: PLC0415

    calls: list[object] = []
    with DagsterInstance.local_temp(
        str(tmp_path), overrides={"telemetry": {"enabled": False}}
    ) as instance:
        monkeypatch.setattr(logging.config, "dictConfig", calls.append)
        instance.get_handlers()
        assert calls, "Dagster no longer calls dictConfig per log manager: drop the workaround"
        calls.clear()
        with_python_log_handlers_once(instance)
        handlers = instance.get_handlers()
        assert calls == []
        assert [type(h).__name__ for h in handlers] == ["_EventListenerLogHandler"]


def test_a_step_cut_from_the_whole_plan_is_the_plan_built_for_that_step() -> None:
    from dagster import reconstructable  # noqa: PLC0415

    from support import job_shapes  # noqa: PLC0415

    job = reconstructable(job_shapes.chain)
    job_def = job.get_definition()
    whole = compat.create_execution_plan(job, run_config={})
    resolved = compat.ResolvedRunConfig.build(job_def, {})
    known = compat.KnownExecutionState(previous_retry_attempts={"middle": 1})
    for step in whole.step_keys_to_execute:
        built = compat.create_execution_plan(
            job, run_config={}, step_keys_to_execute=[step], known_state=known
        )
        cut = compat.step_plan(whole, job_def, resolved, step, known)
        assert cut.step_keys_to_execute == built.step_keys_to_execute == [step]
        assert cut.known_state == built.known_state
        assert cut.artifacts_persisted == built.artifacts_persisted
        assert cut.executable_map == built.executable_map
        assert set(cut.step_dict) == set(built.step_dict)
