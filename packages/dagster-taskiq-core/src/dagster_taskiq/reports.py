"""Human-readable views of the idempotency records (the ``status`` command, the demo)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from dagster_taskiq.payloads import IdempotencyRecord, TaskState

_STYLES = {
    TaskState.PENDING: "yellow",
    TaskState.RUNNING: "cyan",
    TaskState.COMPLETED: "green",
    TaskState.FAILED: "red",
}


def records_table(run_id: str, records: Sequence[IdempotencyRecord], *, now: float) -> Table:
    """One row per step: state, Dagster retry, fence token, enqueues, owner, lease, error."""
    table = Table(title=f"dagster-taskiq steps of run {run_id}")
    for column in ("step", "state", "retry", "attempt", "enqueued", "owner", "lease", "outcome"):
        table.add_column(column, no_wrap=column in ("state", "retry", "attempt", "enqueued"))
    for record in records:
        lease = "-"
        if record.lease_until is not None:
            left = record.lease_until - now
            lease = f"{left:.0f} s left" if left >= 0 else f"expired {-left:.0f} s ago"
        outcome = "-"
        if record.result is not None:
            duration = record.result.finished_at - record.result.started_at
            outcome = f"{duration:.2f} s"
            if record.result.error_class:
                outcome += f", {record.result.error_class}: {record.result.error_message or ''}"
        table.add_row(
            record.step_key,
            f"[{_STYLES[record.state]}]{record.state.value}[/]",
            str(record.retry_number),
            str(record.attempt),
            str(record.enqueue_attempt + 1),
            record.owner or "-",
            lease,
            outcome,
        )
    return table
