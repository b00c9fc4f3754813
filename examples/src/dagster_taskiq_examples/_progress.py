"""Live progress of a run's steps, read from the idempotency store as workers move them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dagster_taskiq import IdempotencyRecord, TaskState

_VERB = {
    TaskState.PENDING: "[cyan]queued   [/]",
    TaskState.RUNNING: "[yellow]running  [/]",
    TaskState.COMPLETED: "[green]completed[/]",
    TaskState.FAILED: "[red]failed   [/]",
}


class StepProgress:
    """Prints each step's moves (queued, running on a worker, finished) above a progress bar."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.seen: dict[str, TaskState] = {}
        self._progress = Progress(
            TextColumn("[bold]steps"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("steps", total=total, counts="")

    def update(self, records: Sequence[IdempotencyRecord]) -> None:
        for record in sorted(records, key=lambda r: r.updated_at):
            if self.seen.get(record.step_key) is record.state:
                continue
            if record.step_key not in self.seen and record.state is not TaskState.PENDING:
                self._print(record.step_key, TaskState.PENDING, "")  # queued between two looks
            self.seen[record.step_key] = record.state
            self._print(record.step_key, record.state, self._detail(record))
        counts = {state: 0 for state in TaskState}
        for state in self.seen.values():
            counts[state] += 1
        done = counts[TaskState.COMPLETED] + counts[TaskState.FAILED]
        text = "  ".join(f"{s.value.lower()} {n}" for s, n in counts.items())
        self._progress.update(self._task, completed=done, total=max(self.total, done), counts=text)

    def _print(self, step: str, state: TaskState, detail: str) -> None:
        self._progress.console.print(f"  {_VERB[state]} {step}{detail}", highlight=False)

    @staticmethod
    def _detail(record: IdempotencyRecord) -> str:
        if record.state is TaskState.RUNNING and record.owner:
            return f"  [dim]on {record.owner}[/]"
        if record.result is not None:
            took = record.result.finished_at - record.result.started_at
            error = f", {record.result.error_message}" if record.result.error_message else ""
            return f"  [dim]{took:.2f} s{error}[/]"
        return ""

    def follow(
        self,
        read: Callable[[], Sequence[IdempotencyRecord]],
        done: threading.Event,
        interval: float = 0.05,
    ) -> None:
        """Show ``read()``'s records every ``interval`` seconds until ``done`` is set."""
        with self._progress:
            while not done.wait(interval):
                self.update(read())
            self.update(read())
