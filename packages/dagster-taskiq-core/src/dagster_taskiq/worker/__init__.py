"""The worker: a long-lived process that runs steps received through a TaskIQ broker."""

from dagster_taskiq.worker._consumer import Worker, WorkerOptions, default_worker_id
from dagster_taskiq.worker._step_runner import StepOutcome, StepRunner

__all__ = ["StepOutcome", "StepRunner", "Worker", "WorkerOptions", "default_worker_id"]
