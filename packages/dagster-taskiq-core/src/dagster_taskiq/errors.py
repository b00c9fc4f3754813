"""The exception hierarchy of ``dagster_taskiq``: one root, :class:`DagsterTaskIQError`."""

from __future__ import annotations


class DagsterTaskIQError(Exception):
    """Root of every error raised by dagster-taskiq."""


class PayloadError(DagsterTaskIQError, ValueError):
    """A message payload could not be decoded or validated.

    ``field`` names the offending field (dotted for nested fields) when one is to blame.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class IdempotencyError(DagsterTaskIQError):
    """Base class of the idempotency store's errors."""


class StoreUnavailableError(IdempotencyError):
    """The store's database could not be reached within the retry budget."""


class SchemaVersionError(IdempotencyError):
    """The store's tables were created by an incompatible version of dagster-taskiq."""
