"""dagster-taskiq: run every step of a Dagster job on long-lived TaskIQ workers."""

import importlib.metadata

from dagster_taskiq.errors import (
    AckError,
    BackendNotFoundError,
    BrokerConfigurationError,
    BrokerError,
    BrokerUnavailableError,
    CodeLocationError,
    DagsterTaskIQError,
    ExecutorConfigError,
    IdempotencyError,
    MessageRefusedError,
    PayloadError,
    SchemaVersionError,
    SettingProblem,
    SettingsError,
    SigningKeyError,
    StepTimeoutError,
    StoreUnavailableError,
)
from dagster_taskiq.executor import (
    QUEUE_TAG,
    TASKIQ_EXECUTOR_CONFIG_SCHEMA,
    TIMEOUT_TAG,
    DagsterTaskIQExecutor,
    ExecutorSettings,
    PriorityLane,
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
from dagster_taskiq.signing import MessageSigner, MessageVerifier, Refusal, SigningKey

__version__ = importlib.metadata.version("dagster-taskiq-core")

__all__ = [
    "PAYLOAD_VERSION",
    "QUEUE_TAG",
    "TASKIQ_EXECUTOR_CONFIG_SCHEMA",
    "TIMEOUT_TAG",
    "AckError",
    "AsyncIdempotencyStore",
    "BackendNotFoundError",
    "BrokerConfigurationError",
    "BrokerError",
    "BrokerUnavailableError",
    "CodeLocationError",
    "CodePointer",
    "DagsterTaskIQError",
    "DagsterTaskIQExecutor",
    "ExecutionResult",
    "ExecutorConfigError",
    "ExecutorSettings",
    "IdempotencyError",
    "IdempotencyRecord",
    "IdempotencyStore",
    "MessageRefusedError",
    "MessageSigner",
    "MessageVerifier",
    "OpExecutionTask",
    "PayloadError",
    "PriorityLane",
    "Refusal",
    "SchemaVersionError",
    "SettingProblem",
    "SettingsError",
    "SigningKey",
    "SigningKeyError",
    "SqlIdempotencyStore",
    "StepTimeoutError",
    "StoreRetry",
    "StoreUnavailableError",
    "TaskState",
    "__version__",
    "idempotency_key",
    "taskiq_executor",
]
