"""The executor: Dagster's run loop sending each step to dagster-taskiq workers."""

from dagster_taskiq.executor._config import (
    QUEUE_TAG,
    TASKIQ_EXECUTOR_CONFIG_SCHEMA,
    TIMEOUT_TAG,
    ExecutorSettings,
    PriorityLane,
)
from dagster_taskiq.executor._executor import DagsterTaskIQExecutor, taskiq_executor

__all__ = [
    "QUEUE_TAG",
    "TASKIQ_EXECUTOR_CONFIG_SCHEMA",
    "TIMEOUT_TAG",
    "DagsterTaskIQExecutor",
    "ExecutorSettings",
    "PriorityLane",
    "taskiq_executor",
]
