"""The idempotency engine: fenced ``PENDING -> RUNNING -> COMPLETED | FAILED`` per step.

See ``docs/idempotency.md`` for the state machine, the SQL of each transition and how
RetryPolicy retries re-arm a FAILED record without ever recording two outcomes for one retry.
"""

from dagster_taskiq.idempotency._async import AsyncIdempotencyStore
from dagster_taskiq.idempotency._protocol import (
    Clock,
    IdempotencyStore,
    OutcomeVersion,
    OutcomeWatch,
    RunSnapshot,
    RunSummary,
)
from dagster_taskiq.idempotency._schema import SCHEMA_VERSION
from dagster_taskiq.idempotency._sql_store import (
    DEFAULT_STORE_RETRY,
    DEFAULT_TABLE_PREFIX,
    SqlIdempotencyStore,
    StoreRetry,
)

__all__ = [
    "DEFAULT_STORE_RETRY",
    "DEFAULT_TABLE_PREFIX",
    "SCHEMA_VERSION",
    "AsyncIdempotencyStore",
    "Clock",
    "IdempotencyStore",
    "OutcomeVersion",
    "OutcomeWatch",
    "RunSnapshot",
    "RunSummary",
    "SqlIdempotencyStore",
    "StoreRetry",
]
