"""Human-readable views of the idempotency records (the ``status`` command, the demo)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from dagster_taskiq.idempotency import RunSummary
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


def runs_table(runs: Sequence[RunSummary], *, now: float) -> Table:
    """One row per run, last changed first: its steps by state and when it last moved."""
    table = Table(title="dagster-taskiq runs (last changed first)")
    table.add_column("run")
    table.add_column("steps", justify="right")
    for state in TaskState:
        table.add_column(state.value, justify="right", style=_STYLES[state])
    table.add_column("first step")
    table.add_column("last change")
    for run in runs:
        table.add_row(
            run.run_id,
            str(run.total),
            *(str(run.steps.get(state, 0)) for state in TaskState),
            _ago(now - run.first_seen),
            _ago(now - run.last_change),
        )
    return table


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{max(0.0, seconds):.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"
