"""The worker: a long-lived process that runs steps received through a TaskIQ broker."""

from dagster_taskiq.instances import LogCapture
from dagster_taskiq.worker._consumer import StopReason, Worker, WorkerOptions, default_worker_id
from dagster_taskiq.worker._step_runner import RunsSteps, StepOutcome, StepRunner
from dagster_taskiq.worker._subprocess_runner import SubprocessStepRunner

__all__ = [
    "LogCapture",
    "RunsSteps",
    "StepOutcome",
    "StepRunner",
    "StopReason",
    "SubprocessStepRunner",
    "Worker",
    "WorkerOptions",
    "default_worker_id",
]
