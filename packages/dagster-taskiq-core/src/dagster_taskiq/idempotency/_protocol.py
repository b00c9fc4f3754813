"""The :class:`IdempotencyStore` protocol: the fenced state machine of one step's record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol

from dagster_taskiq.payloads import ExecutionResult, IdempotencyRecord, OpExecutionTask, TaskState

Clock = Callable[[], float]
"""Returns Unix time in seconds. Stores use the database's clock unless one is injected."""

OutcomeVersion = tuple[int, int, float]
"""Changes whenever a record of a run reaches a final state (or leaves one, to be retried)."""


@dataclasses.dataclass(frozen=True)
class RunSnapshot:
    """Every record of one run, read in one statement, and which leases had run out then."""

    records: tuple[IdempotencyRecord, ...]
    expired: frozenset[str]
    """Keys of the RUNNING records whose lease had run out, by the store's clock."""


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """One run as the store knows it: its steps by state and its last change."""

    run_id: str
    steps: Mapping[TaskState, int]
    """How many of its steps are in each state (states with none are left out)."""
    first_seen: float
    """Unix time of its first record (its first step sent)."""
    last_change: float
    """Unix time of its last record change."""

    @property
    def total(self) -> int:
        return sum(self.steps.values())


class OutcomeWatch(Protocol):
    """Wakes a run's executor when a step outcome of the run is recorded (``finish``).

    The executor waits on it while steps are in flight instead of polling the store: on
    PostgreSQL a notification arrives with the outcome's commit (LISTEN/NOTIFY), so a waiting
    run asks nothing of the database; elsewhere it polls a cheap outcome version with back-off.
    """

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True as soon as an outcome of the run may have been
        recorded since the previous call (including: the watch cannot tell, e.g. after it lost
        and re-made its connection), False when the time ran out without one."""
        ...

    def close(self) -> None:
        """Release what the watch holds (its connection). Idempotent."""
        ...


class IdempotencyStore(Protocol):
    """The fenced ``PENDING -> RUNNING -> COMPLETED | FAILED`` state of each step.

    Every write is one conditional statement on one row; none reads then writes in Python.
    ``attempt`` is the fence token: each successful claim increments it, and only the holder of
    the current token may heartbeat, finish or release.
    """

    def ensure_pending(self, task: OpExecutionTask) -> IdempotencyRecord:
        """Insert the task's record as PENDING if absent; return the current record either way.

        A task with a higher ``retry_number`` than a FAILED record re-arms it to PENDING for
        that retry number (a RetryPolicy retry); any other existing record is left alone.
        """
        ...

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, or None."""
        ...

    def records_for_run(self, run_id: str) -> list[IdempotencyRecord]:
        """Every record of one run, ordered by creation time."""
        ...

    def run_snapshot(self, run_id: str) -> RunSnapshot:
        """The run's records and its expired leases, in one read."""
        ...

    def outcome_version(self, run_id: str) -> OutcomeVersion:
        """A value that changes whenever a record of the run becomes final (cheap to poll)."""
        ...

    def watch_outcomes(self, run_id: str) -> OutcomeWatch:
        """A watch that wakes its caller when an outcome of ``run_id`` is recorded."""
        ...

    def claim(
        self, key: str, owner: str, lease_seconds: float, *, retry_number: int | None = None
    ) -> int | None:
        """PENDING, or RUNNING with an expired lease, -> RUNNING with ``attempt + 1``.

        Returns the new fence token, or None when someone else holds a live lease, the record
        is final, or (when given) ``retry_number`` is not the record's current retry number.
        ``owner`` should identify the claimant uniquely (worker id plus a per-claim suffix).
        """
        ...

    def heartbeat(self, key: str, token: int, lease_seconds: float) -> bool:
        """Extend the lease to now + ``lease_seconds`` while ``token`` is current."""
        ...

    def finish(self, key: str, token: int, result: ExecutionResult) -> bool:
        """RUNNING -> ``result.state`` with the current token; False (logged) for a stale one."""
        ...

    def release(self, key: str, token: int) -> bool:
        """RUNNING -> PENDING with the current token (a worker giving a step back)."""
        ...

    def ping(self) -> None:
        """One round trip to the store (a worker's readiness); raises if it is unreachable."""
        ...

    def expired(self, *, run_id: str | None = None, limit: int = 1000) -> list[IdempotencyRecord]:
        """RUNNING records whose lease ran out (their worker is presumed dead)."""
        ...

    def reclaim(self, key: str, token: int) -> IdempotencyRecord | None:
        """An expired RUNNING record with ``token`` -> PENDING, ``enqueue_attempt + 1``.

        Returns the re-marked record (to re-enqueue with its new enqueue attempt), or None if
        the lease is live, the token moved on, or the record is no longer RUNNING.
        """
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...
