"""dagster-taskiq: run every step of a Dagster job on long-lived TaskIQ workers."""

from dagster_taskiq.errors import (
    DagsterTaskIQError,
    IdempotencyError,
    PayloadError,
    SchemaVersionError,
    StoreUnavailableError,
)
from dagster_taskiq.executor import (
    QUEUE_TAG,
    TASKIQ_EXECUTOR_CONFIG_SCHEMA,
    DagsterTaskIQExecutor,
    ExecutorSettings,
    taskiq_executor,
)
from dagster_taskiq.idempotency import (
    AsyncIdempotencyStore,
    IdempotencyStore,
    SqlIdempotencyStore,
    StoreRetry,
)
from dagster_taskiq.payloads import (
    PAYLOAD_VERSION,
    CodePointer,
    ExecutionResult,
    IdempotencyRecord,
    OpExecutionTask,
    TaskState,
    idempotency_key,
)

__all__ = [
    "PAYLOAD_VERSION",
    "QUEUE_TAG",
    "TASKIQ_EXECUTOR_CONFIG_SCHEMA",
    "AsyncIdempotencyStore",
    "CodePointer",
    "DagsterTaskIQError",
    "DagsterTaskIQExecutor",
    "ExecutionResult",
    "ExecutorSettings",
    "IdempotencyError",
    "IdempotencyRecord",
    "IdempotencyStore",
    "OpExecutionTask",
    "PayloadError",
    "SchemaVersionError",
    "SqlIdempotencyStore",
    "StoreRetry",
    "StoreUnavailableError",
    "TaskState",
    "idempotency_key",
    "taskiq_executor",
]
