"""Jobs of every shape the executor must handle, defined at module level (reconstructable)."""

from __future__ import annotations

from dagster import (
    executor,
    job,
    multiple_process_executor_requirements,
    op,
)

from dagster_taskiq import DagsterTaskIQExecutor
from dagster_taskiq.executor import ExecutorSettings

# Tests put the broker and store the executor must use here (in-process workers share them).
INJECTED: dict[str, object] = {}


@executor(name="taskiq_injected", requirements=multiple_process_executor_requirements())
def injected_executor(init_context):
    return DagsterTaskIQExecutor(
        INJECTED.get("settings") or ExecutorSettings(backend="injected", poll_interval=0.2),  # type: ignore[arg-type]
        broker=INJECTED["broker"],  # type: ignore[arg-type]
        store=INJECTED["store"],  # type: ignore[arg-type]
    )


@op
def one() -> int:
    return 1


@op
def add_one(x: int) -> int:
    return x + 1


@job(executor_def=injected_executor)
def chain3() -> None:
    add_one(add_one(one()))
