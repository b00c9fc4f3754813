"""dagster-taskiq: run every step of a Dagster job on long-lived TaskIQ workers."""

from dagster_taskiq.errors import (
    DagsterTaskIQError,
    IdempotencyError,
    PayloadError,
    SchemaVersionError,
    StoreUnavailableError,
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
    "AsyncIdempotencyStore",
    "CodePointer",
    "DagsterTaskIQError",
    "ExecutionResult",
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
]
