"""The demo's closing summary: steps, wall time, per-step overhead and the exactly-once check."""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from collections.abc import Sequence

from dagster import DagsterEventType, DagsterInstance
from rich.table import Table

from dagster_taskiq import IdempotencyRecord, TaskState


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclasses.dataclass(frozen=True)
class RunSummary:
    run_id: str
    success: bool
    wall_seconds: float
    planned_steps: int
    completed: int
    failed: list[str]
    not_run: int
    """Planned steps never queued (downstream of a failure)."""
    overheads: list[float]
    """Per step: seconds from being queued to its outcome being recorded, minus its own run."""
    violations: list[str]
    """Breaches of exactly-once: a step started or finished more than once."""

    @property
    def overhead_p50(self) -> float | None:
        return statistics.median(self.overheads) if self.overheads else None

    @property
    def overhead_p95(self) -> float | None:
        return percentile(self.overheads, 0.95) if self.overheads else None

    def table(self) -> Table:
        table = Table(title=f"dagster-taskiq demo: run {self.run_id}", show_header=False)
        table.add_column("what")
        table.add_column("value")
        status = "[green]SUCCESS[/]" if self.success else "[red]FAILURE[/]"
        table.add_row("run", status)
        table.add_row(
            "steps",
            f"{self.planned_steps} planned, {self.completed} completed, {len(self.failed)} failed,"
            f" {self.not_run} not run",
        )
        table.add_row("wall time", f"{self.wall_seconds:.2f} s")
        if self.overheads:
            table.add_row(
                "per-step overhead",
                f"p50 {self.overhead_p50 * 1000:.0f} ms, p95 {self.overhead_p95 * 1000:.0f} ms"  # type: ignore[operator]
                " (queued -> outcome recorded, minus the step's own run)",
            )
        check = (
            "[green]ok[/]: each step started once and has one outcome"
            if not self.violations
            else "[red]VIOLATED[/]: " + "; ".join(self.violations)
        )
        table.add_row("exactly once", check)
        if self.failed:
            table.add_row("failed steps", ", ".join(self.failed))
        return table


def summarize(
    instance: DagsterInstance,
    run_id: str,
    records: Sequence[IdempotencyRecord],
    *,
    planned_steps: int,
    wall_seconds: float,
    success: bool,
) -> RunSummary:
    """Check the run's records against its Dagster event log."""
    starts: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type is DagsterEventType.STEP_START:
            starts[event.step_key] += 1
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            outcomes[event.step_key] += 1
    violations = [f"{step} started {n} times" for step, n in starts.items() if n > 1]
    violations += [f"{step} has {n} outcomes" for step, n in outcomes.items() if n > 1]
    violations += [
        f"{r.step_key} is {r.state.value} in the store but has no outcome event"
        for r in records
        if r.state.is_final and outcomes[r.step_key] == 0
    ]
    overheads = [
        (r.updated_at - r.created_at) - (r.result.finished_at - r.result.started_at)
        for r in records
        if r.result is not None
    ]
    return RunSummary(
        run_id=run_id,
        success=success,
        wall_seconds=wall_seconds,
        planned_steps=planned_steps,
        completed=sum(r.state is TaskState.COMPLETED for r in records),
        failed=sorted(r.step_key for r in records if r.state is TaskState.FAILED),
        not_run=max(0, planned_steps - len(records)),
        overheads=overheads,
        violations=violations,
    )
